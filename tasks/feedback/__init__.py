"""Feedback quality, before training: which feedback labels are likely wrong, and which
clients send them.

Modules: :mod:`~citeops.tasks.feedback.confident` (the confident-learning rule),
:mod:`~citeops.tasks.feedback.quality` (score the store's feedback with the champion,
flag, judge clients), :mod:`~citeops.tasks.feedback.steps` (its Prefect task, for the
``monitor`` flow). Documented in docs/feedback-quality.md.
"""
