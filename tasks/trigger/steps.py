"""Thin Prefect tasks over the trigger functions, for the ``monitor`` flow.

The tasks run the same functions as ``citeops trigger``. No caching: every decision must
read the store as it is now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.stepkit import settings_from
from citeops.tasks.trigger.decision import (
    RetrainDecision,
    RetrainLaunch,
    record_decision,
    should_retrain,
)
from citeops.tasks.trigger.launch import (
    carry_pending,
    deferred_launch,
    pending_decision,
    start_retraining,
)

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.drift.detect import DriftReport


START_RETRY_DELAYS = [2, 5]


@task(name="should-retrain", cache_policy=NO_CACHE)
def retrain_decision(
    settings: Settings, drift: DriftReport | None, force: bool = False
) -> RetrainDecision:
    """:func:`~citeops.tasks.trigger.decision.should_retrain`, not yet recorded; a
    retraining an earlier run decided on but could not start (Prefect API down) is
    carried into it (:func:`~citeops.tasks.trigger.launch.carry_pending`)."""
    decision = should_retrain(settings, force=force, drift=drift, record=False)
    return carry_pending(decision, pending_decision(settings))


@task(
    name="start-retraining",
    retries=len(START_RETRY_DELAYS),
    retry_delay_seconds=START_RETRY_DELAYS,
    cache_policy=NO_CACHE,
)
def retraining_run(settings: Settings, decision: RetrainDecision) -> RetrainLaunch:
    """:func:`~citeops.tasks.trigger.launch.start_retraining`, retried when the Prefect
    API fails (the idempotency key keeps it to one flow run)."""
    return start_retraining(settings, decision)


def launch_retraining(settings: Settings, decision: RetrainDecision) -> RetrainLaunch:
    """:func:`retraining_run` with its retries; when they are spent (the Prefect API does
    not answer), a ``pending`` launch that the next ``monitor`` run retries, so that the
    flow still records the decision instead of failing before it."""
    state = retraining_run(settings, decision, return_state=True)
    if state.is_completed():
        return state.result()
    try:
        state.result()
    except Exception as error:  # whatever the client raised once the retries were spent
        return deferred_launch(error)
    return deferred_launch(state.message or str(state.type))


@task(name="record-decision", cache_policy=NO_CACHE)
def recorded_decision(
    settings: Settings,
    decision: RetrainDecision,
    launch: RetrainLaunch | None,
    mlflow_run_id: str | None,
) -> RetrainDecision:
    """The decision with the run it started (``deployment``), recorded in the decision log
    and on the drift run ``mlflow_run_id``."""
    decision.deployment = launch
    record_decision(decision, settings, mlflow_run_id)
    return decision


@task(name="decide-retraining", cache_policy=NO_CACHE)
def decide_retraining(force: bool, overrides: dict[str, Any] | None = None) -> RetrainDecision:
    """The trigger rule now: new feedback since the last training, or forced."""

    return should_retrain(settings_from(overrides), force=force, record=False)
