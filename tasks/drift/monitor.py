"""One drift run end to end: reference and window in, report files, MLflow run and alert out.

The run is two steps, which ``citeops drift`` calls in turn and the ``monitor`` flow runs
as tasks (so that the alert is retried on its own): :func:`check_drift` (load, detect,
write the report, log the MLflow run) and :func:`alert_on_drift`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.drift.alert import AlertDelivery, alert_if_drift, post_alert
from citeops.tasks.drift.charts import drift_figures
from citeops.tasks.drift.current import QueryWindow, load_current_window
from citeops.tasks.drift.detect import DriftReport, detect_drift
from citeops.tasks.drift.reference import Reference, load_reference, reference_predictions
from citeops.tasks.drift.report import write_report, write_summary
from citeops.tasks.tracking import ensure_experiment, require_fluent_tracking

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from citeops.configs.settings import Settings

logger = logging.getLogger(__name__)


def prepare_reference(
    settings: Settings,
    datasets: Sequence[str] | None = None,
    model_uri: str | None = None,
    with_predictions: bool = True,
) -> Reference:
    """Training data of ``datasets`` plus the model's stored held-out predictions (when the
    model can be loaded; otherwise the reference notes why there are none)."""
    names = tuple(datasets or settings.train.datasets)
    preds, note = (None, "no reference predictions: not requested")
    if with_predictions:
        preds, note = reference_predictions(settings, model_uri, names)
    return load_reference(settings, names, preds, note if preds is None else "")


def log_drift_run(
    report: DriftReport,
    settings: Settings,
    reference: Reference,
    figures: dict[str, list[Figure]] | None = None,
) -> str:
    """Log the report as an MLflow monitoring run (metrics per check, HTML + JSON
    artifacts, the charts as images, reference predictions); returns the run id."""
    import mlflow

    require_fluent_tracking(settings)
    experiment_id = ensure_experiment(settings, settings.drift.mlflow_experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name="drift") as run:
        mlflow.set_tags(
            {"citeops.kind": "drift", "drift.status": report.status, "drift.rule": report.rule}
        )
        mlflow.log_params(
            {
                "current_rows": report.current_rows,
                "reference_datasets": ",".join(reference.datasets),
                "reference_model": report.reference.get("model_uri") or "none",
                "window_source": str(report.window.get("source"))[:250],
            }
        )
        metrics = {
            "drift": float(bool(report.drift)),
            "drifted_checks": float(len(report.drifted_checks)),
        }
        for check in report.checks:
            if check.statistic is not None:
                metrics[f"{check.name}.statistic"] = float(check.statistic)
                metrics[f"{check.name}.drift"] = float(bool(check.drift))
        mlflow.log_metrics(metrics)
        for path in (report.report, report.summary_path):
            if path:
                mlflow.log_artifact(path, artifact_path="drift")
        for name, charts in (figures or {}).items():
            for i, fig in enumerate(charts):
                mlflow.log_figure(fig, f"drift/charts/{name}{'' if i == 0 else f'-{i + 1}'}.png")
        if reference.predictions is not None:
            mlflow.log_dict(reference.predictions.to_json(), "drift/reference_predictions.json")
        logger.info("drift run logged to MLflow: %s", run.info.run_id)
        return run.info.run_id


def check_drift(
    settings: Settings,
    current_dir: Path | str | None = None,
    reference_datasets: Sequence[str] | None = None,
    model_uri: str | None = None,
    since: datetime | None = None,
    log_mlflow: bool = True,
    window: QueryWindow | None = None,
) -> DriftReport:
    """Load the window (``window``, else ``current_dir``, else the query store) and the
    reference, run every check, write the report under ``settings.reports_dir`` and log it
    to MLflow (``log_mlflow``).

    Raises:
        QueryWindowError: the current window cannot be read.
        DataFileError: the reference datasets are missing.
    """

    current = window if window is not None else load_current_window(settings, current_dir, since)
    enough = len(current) >= settings.drift.min_rows  # else no model needs loading
    reference = prepare_reference(settings, reference_datasets, model_uri, with_predictions=enough)
    report = detect_drift(reference, current, settings.drift)
    figures = drift_figures(report)
    write_report(report, settings.reports_dir, figures)
    if log_mlflow:
        report.mlflow_run_id = log_drift_run(report, settings, reference, figures)
        write_summary(report, Path(report.summary_path or ""))  # now with the run id
    return report


def alert_on_drift(
    settings: Settings,
    report: DriftReport,
    post: Callable[[str, dict[str, Any], float], AlertDelivery] = post_alert,
) -> AlertDelivery | None:
    """POST the webhook (``drift.alert_webhook_url``) with ``post`` when ``report`` found
    drift, and keep the delivery record in the report's JSON summary. Never raises."""
    delivery = alert_if_drift(
        report, settings.drift.alert_webhook_url, settings.drift.alert_timeout_seconds, post
    )
    if delivery is not None and report.summary_path:
        write_summary(report, Path(report.summary_path))
    return delivery
