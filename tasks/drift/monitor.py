"""One drift run end to end: reference and window in, report files, MLflow run and alert out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from citeops.tasks.drift.alert import alert_if_drift
from citeops.tasks.drift.current import QueryWindow, load_current_window
from citeops.tasks.drift.detect import DriftReport, detect_drift
from citeops.tasks.drift.reference import Reference, load_reference, reference_predictions
from citeops.tasks.drift.report import write_report

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


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


def log_drift_run(report: DriftReport, settings: Settings, reference: Reference) -> str:
    """Log the report as an MLflow monitoring run (metrics per check, HTML + JSON
    artifacts, reference predictions); returns the run id."""
    import mlflow
    from citeops.tasks.model.registry import ensure_experiment

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
        if reference.predictions is not None:
            mlflow.log_dict(reference.predictions.to_json(), "drift/reference_predictions.json")
        return run.info.run_id


def run_drift(
    settings: Settings,
    current_dir: Path | str | None = None,
    reference_datasets: Sequence[str] | None = None,
    model_uri: str | None = None,
    since: datetime | None = None,
    log_mlflow: bool = True,
    alert: bool = True,
    window: QueryWindow | None = None,
) -> DriftReport:
    """Load, detect, write the report under ``settings.reports_dir``, log it to MLflow and
    alert the webhook when drift is found.

    Raises:
        QueryWindowError: the current window cannot be read.
        DataFileError: the reference datasets are missing.
    """
    current = window if window is not None else load_current_window(settings, current_dir, since)
    enough = len(current) >= settings.drift.min_rows  # else no model needs loading
    reference = prepare_reference(settings, reference_datasets, model_uri, with_predictions=enough)
    report = detect_drift(reference, current, settings.drift)
    write_report(report, settings.reports_dir)
    if log_mlflow:
        report.mlflow_run_id = log_drift_run(report, settings, reference)
    if alert:
        alert_if_drift(
            report, settings.drift.alert_webhook_url, settings.drift.alert_timeout_seconds
        )
    if log_mlflow or alert:  # keep the JSON summary in step with the run id and alert record
        from citeops.tasks.drift.report import write_summary

        write_summary(report, Path(report.summary_path or ""))
    return report
