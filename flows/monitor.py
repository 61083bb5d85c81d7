"""The monitoring flow: ingest, drift, trigger, and retraining when the trigger fires.

Deployed daily; the quarterly schedule runs it with ``force=True``. Keyword arguments in,
a dict out (the ingest result, the drift summary and the recorded decision).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

TRAIN_FLOW = "train"


@task(name="detect-drift")
def detect_drift_task(
    current_dir: str | None, reference_datasets: list[str] | None, model_uri: str | None
) -> dict[str, Any]:
    """Thin task over :func:`tasks.drift.monitor.run_drift`; returns the JSON summary."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.drift.monitor import run_drift

    return run_drift(load_settings(), current_dir, reference_datasets, model_uri).summary()


@task(name="publish-drift-artifact")
def publish_drift_artifact(summary: dict[str, Any]) -> None:
    """The drift summary as a Prefect markdown artifact (key ``drift-report``)."""
    from prefect.artifacts import create_markdown_artifact

    from citeops.tasks.drift.report import summary_markdown

    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key="drift-report",
        description=f"drift: {summary['status']}",
    )


@task(name="should-retrain")
def should_retrain_task(drift_summary: dict[str, Any] | None, force: bool) -> dict[str, Any]:
    """Thin task over :func:`tasks.trigger.should_retrain` (not yet recorded)."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.trigger import should_retrain

    return should_retrain(load_settings(), force=force, drift=drift_summary, record=False).to_dict()


@task(name="start-retraining", retries=2, retry_delay_seconds=[2, 5])
def start_retraining(decision: dict[str, Any]) -> dict[str, Any]:
    """Start the retraining deployment without waiting for it; says why when there is none."""
    from citeops.configs.settings import load_settings

    name = find_train_deployment(load_settings().trigger.retrain_deployment)
    if name is None:
        return {
            "started": False,
            "reason": f"no deployment of flow {TRAIN_FLOW!r}: decision recorded",
        }
    from prefect.deployments import run_deployment

    run = run_deployment(
        name=name,
        timeout=0,
        as_subflow=False,
        tags=["citeops", "trigger:" + "+".join(decision["causes"])],
    )
    return {"started": True, "deployment": name, "flow_run_id": str(run.id)}


def find_train_deployment(configured: str | None) -> str | None:
    """``flow/deployment`` of the retraining deployment: the configured one if it exists,
    else the first deployment of the ``train`` flow, else ``None``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        if configured:
            try:
                client.read_deployment_by_name(configured)
            except ObjectNotFound:
                return None
            return configured
        found = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[TRAIN_FLOW])), limit=1
        )
    return f"{TRAIN_FLOW}/{found[0].name}" if found else None


@task(name="record-decision")
def record_decision_task(decision: dict[str, Any], mlflow_run_id: str | None) -> dict[str, Any]:
    from citeops.configs.settings import load_settings
    from citeops.tasks.trigger import RetrainDecision, record_decision

    record = RetrainDecision(**decision)
    record_decision(record, load_settings(), mlflow_run_id)
    return record.to_dict()


def run_ingest() -> dict[str, Any]:
    """The ingestion flow (``flows.ingest.ingest_feedback``) as a subflow, when it exists."""
    try:
        from citeops.flows.ingest import ingest_feedback  # type: ignore[import-not-found]
    except ImportError:
        return {"skipped": "citeops.flows.ingest.ingest_feedback is not available"}
    result = ingest_feedback()
    return result if isinstance(result, dict) else {"result": str(result)}


@flow(name="monitor")
def monitor(
    current_dir: str | None = None,
    reference_datasets: list[str] | None = None,
    model_uri: str | None = None,
    force: bool = False,
    ingest: bool = True,
) -> dict[str, Any]:
    """Ingest new logs, check drift, decide on retraining, start it when the trigger fires."""
    ingested = run_ingest() if ingest else {"skipped": "ingest=False"}
    drift = detect_drift_task(current_dir, reference_datasets, model_uri)
    publish_drift_artifact(drift)
    decision = should_retrain_task(drift, force)
    if decision["retrain"]:
        decision["deployment"] = start_retraining(decision)
    decision = record_decision_task(decision, drift.get("mlflow_run_id"))
    return {"ingest": ingested, "drift": drift, "decision": decision}
