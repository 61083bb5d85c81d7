"""The monitoring flow: ingest, feedback quality, drift, trigger, and the ``retrain``
deployment when the trigger fires; then the review of a running online phase (A/B report,
promote or abort).

Deployed daily; keyword arguments in, a JSON-able dict out (the ingest report, the
feedback-quality summary, the drift summary and the recorded decision, with the
retraining flow run it started). When the Prefect API cannot start that run, the decision
is recorded with a ``pending`` launch and the next run of this flow starts it.
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
    review_online: bool = True,
) -> dict[str, Any]:
    """Ingest new logs, check drift, decide on retraining, start it when the trigger fires;
    review a running online phase (``review_online``): promote or abort on its verdict."""
    from citeops.configs.settings import load_settings
    from citeops.flows.ingest import ingest_feedback
    from citeops.flows.logs import stage_logs
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.drift import steps as drift
    from citeops.tasks.feedback.steps import feedback_quality
    from citeops.tasks.release.reconcile import reconcile
    from citeops.tasks.release.steps import review_online_phase
    from citeops.tasks.trigger import steps as trigger

    with stage_logs():
        settings = use_mlflow(load_settings())
        reconcile(settings)  # what a killed retrain / promotion left, put right first
        ingested = ingest_feedback() if ingest else {"skipped": "ingest=False"}
        quality = feedback_quality(settings)  # flags before the trigger counts
        report = drift.drift_report(settings, current_dir, reference_datasets, model_uri)
        report = drift.alert_drift(settings, report)
        drift.publish_drift_report(report)
        decision = trigger.retrain_decision(settings, report, force)
        launch = trigger.launch_retraining(settings, decision) if decision.retrain else None
        decision = trigger.recorded_decision(settings, decision, launch, report.mlflow_run_id)
        online = review_online_phase(settings) if review_online else {"skipped": True}
    return {
        "ingest": ingested,
        "feedback_quality": quality,
        "drift": report.summary(),
        "decision": decision.to_dict(),
        "online": online,
    }
