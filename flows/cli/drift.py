"""`citeops drift`, `citeops trigger`, `citeops bench drift`, `citeops bench drift-calibration`."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import typer

from citeops.flows.cli.common import info, print_json, settings_from

EVIDENTLY_PYTHON_ENV = "CITEOPS_EVIDENTLY_PYTHON"


def _datasets(value: str | None) -> list[str] | None:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    from citeops.tasks.drift.monitor import run_drift

    settings = settings_from()
    report = run_drift(
        settings,
        current,
        _datasets(reference_datasets),
        model_uri,
        _since(since),
        log_mlflow=mlflow_log,
        alert=alert,
    )
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
    import json

    from citeops.tasks.trigger import latest_drift_summary, should_retrain

    settings = settings_from()
    summary = (
        json.loads(Path(drift_report).read_text())
        if drift_report
        else latest_drift_summary(settings)
    )
    decision = should_retrain(settings, force=force, drift=summary)
    if as_json:
        print_json(decision.to_dict())
        return
    typer.echo(f"retrain: {'yes' if decision.retrain else 'no'}")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"recorded in {decision.record}")


def bench_drift(
    rows: int = typer.Option(100_000, "--rows", min=30, help="current queries to check"),
    evidently_python: str | None = typer.Option(
        None,
        "--evidently-python",
        help=f"python of a venv with evidently==0.7.23 (or ${EVIDENTLY_PYTHON_ENV})",
    ),
    scenario: str = typer.Option(
        "same", "--scenario", help="same: training dataset mix; mixed: uniform (a shift)"
    ),
    reference_datasets: str | None = typer.Option(
        None, "--reference-datasets", help="comma-separated, default: the training datasets"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time a drift run on ROWS generated queries; compare with Evidently when available."""
    from citeops.tasks.drift.bench import run_speed_bench

    settings = settings_from()
    python = evidently_python or os.environ.get(EVIDENTLY_PYTHON_ENV)
    names = _datasets(reference_datasets)
    result = run_speed_bench(
        settings,
        rows,
        python,
        progress=info,
        scenario=scenario,
        datasets=tuple(names) if names else None,
    )
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        typer.echo(f"{key}: {value}")


def bench_drift_calibration(
    rounds: int = typer.Option(40, "--rounds", min=1, help="random same-data splits"),
    mix_rounds: int = typer.Option(10, "--mix-rounds", min=0, help="rounds per mix share"),
    current_rows: int = typer.Option(300, "--current-rows", min=30),
    workers: int = typer.Option(1, "--workers", min=1, help="processes running rounds"),
    shares: str = typer.Option(
        "1,0.5,0.25,0.1", "--shares", help="shares of Citation-Integrity in the power rounds"
    ),
    pool: str = typer.Option(
        "scifact",
        "--pool",
        help="datasets re-split for the false-alarm rounds (with citint: no power rounds)",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """False-alarm rate (SciFact vs SciFact) and power (Citation-Integrity mixed in)."""
    from citeops.tasks.drift.calibration import run_calibration

    result = run_calibration(
        settings_from(),
        rounds,
        mix_rounds,
        current_rows,
        shares=[float(x) for x in shares.split(",") if x.strip()],
        progress=info,
        workers=workers,
        pool_datasets=tuple(_datasets(pool) or ["scifact"]),
    )

    if as_json:
        print_json(result)
        return
    from citeops.tasks.drift.calibration import format_calibration

    typer.echo(format_calibration(result))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the drift commands to the root and bench apps."""
    app.command("drift")(drift)
    app.command("trigger")(trigger)
    bench_app.command("drift")(bench_drift)
    bench_app.command("drift-calibration")(bench_drift_calibration)
