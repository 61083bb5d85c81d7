"""Start the retraining: a flow run of the ``retrain`` deployment, without waiting for it.

The deployment is ``trigger.retrain_deployment`` when set, else ``retrain/on-demand``,
else the first deployment of the ``retrain`` flow; the run gets the decision as its
``trigger`` parameter, so its promotion record says what caused it. With no deployment,
nothing starts and the launch says why (the decision is still recorded). When the Prefect
API does not answer, the launch is recorded as ``pending`` with the decision, and the next
``monitor`` run starts it (:func:`pending_decision`, :func:`carry_pending`): a decision to
retrain is never lost to an outage.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from citeops.tasks.store.decisions import list_decisions
from citeops.tasks.trigger.decision import RetrainDecision, RetrainLaunch

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

logger = logging.getLogger(__name__)

RETRAIN_FLOW = "retrain"
ON_DEMAND = "on-demand"  # preferred: the quarterly one forces every run


def find_retrain_deployment(configured: str | None) -> str | None:
    """``flow/deployment`` of the retraining deployment: ``configured`` if it exists,
    else ``retrain/on-demand``, else the first deployment of the ``retrain`` flow by name,
    else ``None``."""
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
            flow_filter=FlowFilter(name=FlowFilterName(any_=[RETRAIN_FLOW]))
        )
    names = sorted(d.name for d in found)
    if not names:
        return None
    chosen = ON_DEMAND if ON_DEMAND in names else names[0]
    return f"{RETRAIN_FLOW}/{chosen}"


def trigger_parameter(decision: RetrainDecision) -> dict[str, Any]:
    """What the retrain run records as its cause: the decision's causes, reasons, time
    and the inputs it was made from."""
    return {
        "causes": list(decision.causes),
        "reasons": list(decision.reasons),
        "decided_at": decision.decided_at,
        "inputs": json.loads(json.dumps(decision.inputs, default=str)),
    }


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
        parameters={"trigger": trigger_parameter(decision)},
        idempotency_key=f"citeops-trigger-{decision.decided_at}",
    )
    logger.info("retraining started: deployment %s, flow run %s", name, run.id)
    return RetrainLaunch(True, deployment=name, flow_run_id=str(run.id))


def deferred_launch(error: BaseException | str) -> RetrainLaunch:
    """The launch of a decision whose start failed after its retries: ``pending``, with
    the Prefect API's error in one line."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    reason = f"Prefect API unavailable ({text}): decision kept, the next monitor run starts it"
    logger.warning("retraining not started: %s", reason)
    return RetrainLaunch(False, reason=reason, pending=True)


def pending_decision(settings: Settings) -> dict[str, Any] | None:
    """The latest recorded decision when it wanted a retrain whose start is ``pending``
    (the Prefect API was down), else ``None``: a later decision supersedes it."""
    latest = list_decisions(settings, limit=1)
    if not latest:
        return None
    launch = latest[0].get("deployment") or {}
    return latest[0] if latest[0]["retrain"] and launch.get("pending") else None


def carry_pending(decision: RetrainDecision, pending: dict[str, Any] | None) -> RetrainDecision:
    """``decision``, made to retrain for ``pending``'s causes too (with a reason naming
    the decision retried and its id in ``inputs["retried_decision"]``); unchanged when
    nothing is pending."""
    if not pending:
        return decision
    if not decision.retrain:  # "no cause fired" no longer holds
        decision.reasons = [r for r in decision.reasons if not r.startswith("no cause fired")]
    decision.retrain = True
    decision.causes = list(dict.fromkeys([*decision.causes, *pending["causes"]]))
    decision.reasons.append(
        f"retried: decision #{pending['id']} of {pending['decided_at']} could not start the "
        f"retraining ({(pending.get('deployment') or {}).get('reason')})"
    )
    decision.inputs["retried_decision"] = pending["id"]
    return decision
