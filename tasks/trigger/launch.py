"""Start the retraining: a flow run of the ``retrain`` deployment, without waiting for it.

The deployment is ``trigger.retrain_deployment`` when set, else the first deployment of
the ``retrain`` flow. With no deployment, nothing starts and the launch says why (the
decision is still recorded).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from citeops.tasks.trigger.decision import RetrainDecision, RetrainLaunch

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

logger = logging.getLogger(__name__)

RETRAIN_FLOW = "retrain"


def find_retrain_deployment(configured: str | None) -> str | None:
    """``flow/deployment`` of the retraining deployment: ``configured`` if it exists,
    else the first deployment of the ``retrain`` flow, else ``None``."""
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
            flow_filter=FlowFilter(name=FlowFilterName(any_=[RETRAIN_FLOW])), limit=1
        )
    return f"{RETRAIN_FLOW}/{found[0].name}" if found else None


def start_retraining(settings: Settings, decision: RetrainDecision) -> RetrainLaunch:
    """A flow run of the retraining deployment, tagged with the decision's causes.

    The flow run's idempotency key is the decision's time, so starting it again for the
    same decision (a retried task) does not start a second run.
    """
    configured = settings.trigger.retrain_deployment
    name = find_retrain_deployment(configured)
    if name is None:
        wanted = repr(configured) if configured else f"of flow {RETRAIN_FLOW!r}"
        launch = RetrainLaunch(False, reason=f"no deployment {wanted}: decision recorded")
        logger.warning("retraining not started: %s", launch.reason)
        return launch
    from prefect.deployments import run_deployment

    run = run_deployment(
        name=name,
        timeout=0,
        as_subflow=False,
        tags=["citeops", "trigger:" + "+".join(decision.causes)],
        idempotency_key=f"citeops-trigger-{decision.decided_at}",
    )
    logger.info("retraining started: deployment %s, flow run %s", name, run.id)
    return RetrainLaunch(True, deployment=name, flow_run_id=str(run.id))
