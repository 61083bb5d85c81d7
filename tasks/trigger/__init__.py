"""The retraining trigger: should the model be retrained now, and why.

Modules: :mod:`~citeops.tasks.trigger.decision` (the rule, the inputs it reads from the
curated store and the drift run, and the decision log), :mod:`~citeops.tasks.trigger.launch`
(start the ``retrain`` deployment), :mod:`~citeops.tasks.trigger.steps` (their Prefect
tasks, for the ``monitor`` flow).
"""
