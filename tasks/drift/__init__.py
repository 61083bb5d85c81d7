"""Drift detection: compare production queries with the model's training data.

Modules: :mod:`~citeops.tasks.drift.checks` (the statistical checks and the verdict rule,
plain functions), :mod:`~citeops.tasks.drift.reference` (training data and the model's
held-out predictions), :mod:`~citeops.tasks.drift.current` (the window of production
queries), :mod:`~citeops.tasks.drift.detect` (runs every check on a reference and a
window), :mod:`~citeops.tasks.drift.charts` and :mod:`~citeops.tasks.drift.report`
(matplotlib charts; HTML + JSON + markdown), :mod:`~citeops.tasks.drift.alert` (the
webhook), :mod:`~citeops.tasks.drift.monitor` (the whole run: load, detect, write, log to
MLflow, alert; what ``citeops drift`` runs) and :mod:`~citeops.tasks.drift.steps` (the
same steps as Prefect tasks, for the ``monitor`` flow).
"""
