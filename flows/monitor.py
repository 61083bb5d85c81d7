"""The monitoring flow: ingest, drift, trigger, and the ``retrain`` deployment when the
trigger fires.

Deployed daily; keyword arguments in, a JSON-able dict out (the ingest report, the drift
summary and the recorded decision, with the retraining flow run it started).
"""

from __future__ import annotations

from typing import Any

from prefect import flow


@flow(name="monitor")
def monitor(
    current_dir: str | None = None,
    reference_datasets: list[str] | None = None,
    model_uri: str | None = None,
    force: bool = False,
    ingest: bool = True,
) -> dict[str, Any]:
    """Ingest new logs, check drift, decide on retraining, start it when the trigger fires."""
    from citeops.configs.settings import load_settings
    from citeops.flows.ingest import ingest_feedback
    from citeops.flows.logs import stage_logs
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.drift import steps as drift
    from citeops.tasks.trigger import steps as trigger

    with stage_logs():
        settings = use_mlflow(load_settings())
        ingested = ingest_feedback() if ingest else {"skipped": "ingest=False"}
        report = drift.drift_report(settings, current_dir, reference_datasets, model_uri)
        report = drift.alert_drift(settings, report)
        drift.publish_drift_report(report)
        decision = trigger.retrain_decision(settings, report, force)
        launch = trigger.retraining_run(settings, decision) if decision.retrain else None
        decision = trigger.recorded_decision(settings, decision, launch, report.mlflow_run_id)
    return {"ingest": ingested, "drift": report.summary(), "decision": decision.to_dict()}
