"""`citeops drift`, `citeops trigger`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from citeops.flows.cli.common import print_json, settings_from, stage_progress
from citeops.tasks.times import parse_utc


def _datasets(value: str | None) -> list[str] | None:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


def _since(value: str | None) -> datetime | None:
    """``--since`` as an aware datetime (no offset means UTC)."""
    if not value:
        return None
    try:
        return parse_utc(value)
    except ValueError as error:
        raise typer.BadParameter(f"{value!r} is not an ISO date or date-time") from error


def drift(
    current: str | None = typer.Option(None, "--current", help="folder of query-log JSONL files"),
    reference_datasets: str | None = typer.Option(
        None, "--reference-datasets", help="comma-separated, default: the training datasets"
    ),
    model_uri: str | None = typer.Option(
        None, "--model-uri", help="model for reference predictions (default: champion)"
    ),
    since: str | None = typer.Option(None, "--since", help="ISO date/time; default: window_days"),
    mlflow_log: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log a monitoring run"),
    alert: bool = typer.Option(True, "--alert/--no-alert", help="POST the webhook on drift"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON summary"),
) -> None:
    """Compare production queries with the training data; write the HTML + JSON report."""
    from citeops.tasks.drift.monitor import alert_on_drift, check_drift

    settings = settings_from()
    with stage_progress():
        report = check_drift(
            settings,
            current,
            _datasets(reference_datasets),
            model_uri,
            _since(since),
            log_mlflow=mlflow_log,
        )
        if alert:
            alert_on_drift(settings, report)
    if as_json:
        print_json(report.summary())
        return
    typer.echo(f"drift: {report.status} ({report.current_rows} queries, rule {report.rule})")
    for check in report.checks:
        stat = "—" if check.statistic is None else f"{check.statistic:.4f}"
        limit = "—" if check.threshold is None else f"{check.threshold:.4f}"
        sign = ">" if check.direction == "above" else "<"
        typer.echo(
            f"  {check.name:24s} {stat:>10s} {sign} {limit:<8s} {check.status}"
            + (f"  ({check.note})" if check.note else "")
        )
    typer.echo(f"report: {report.report}")


def trigger(
    force: bool = typer.Option(False, "--force", help="retrain whatever the inputs say"),
    drift_report: str | None = typer.Option(
        None, "--drift-report", help="drift JSON summary (default: the latest one)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the decision as JSON"),
) -> None:
    """Decide whether to retrain (feedback count, latest drift, --force); record the decision."""
    from citeops.tasks.trigger.decision import (
        latest_drift_summary,
        read_drift_summary,
        should_retrain,
    )

    settings = settings_from()
    summary = (
        read_drift_summary(Path(drift_report)) if drift_report else latest_drift_summary(settings)
    )
    with stage_progress():
        decision = should_retrain(settings, force=force, drift=summary)
    if as_json:
        print_json(decision.to_dict())
        return
    typer.echo(f"retrain: {'yes' if decision.retrain else 'no'}")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"recorded in {decision.record}")


def register(app: typer.Typer) -> None:
    """Add the drift commands to the root app."""
    app.command("drift")(drift)
    app.command("trigger")(trigger)
