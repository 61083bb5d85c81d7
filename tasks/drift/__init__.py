"""Drift detection: compare production queries with the model's training data.

Modules: :mod:`~tasks.drift.checks` (the statistical checks and the verdict rule, plain
functions), :mod:`~tasks.drift.reference` (training data and the model's held-out
predictions), :mod:`~tasks.drift.current` (the window of production queries),
:mod:`~tasks.drift.detect` (runs every check on a reference and a window),
:mod:`~tasks.drift.report` (HTML + JSON + markdown), :mod:`~tasks.drift.monitor` (the whole
run: load, detect, write, log to MLflow, alert).
"""
