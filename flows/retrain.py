"""The retrain flow: training set → train candidate → validate against the champion →
gate → blue-green promotion with bake → record. Wiring only; the work is in
the stage packages' ``steps`` modules
(:mod:`citeops.tasks.train.steps`, :mod:`citeops.tasks.validate.steps`,
:mod:`citeops.tasks.release.steps`).

One retrain runs at a time (a lock row in the store). Every run leaves a promotion record
(``citeops history``) whatever its outcome: ``skipped`` (the trigger did not fire),
``gate_failed``, ``rolled_back`` (refused by an endpoint or broke the bake), ``failed``,
``promoted``, or ``online`` (``promote.online`` = ab | shadow: the gated challenger is in
its online phase on every endpoint; ``monitor`` promotes or aborts it on the A/B report).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from citeops.flows.params import (
    OnlineMode,
    RetrainOverrides,
    RetrainTrigger,
    TrainOverrides,
    given,
)
from citeops.tasks.release import steps as release
from citeops.tasks.train import steps as train_steps
from citeops.tasks.trigger.steps import decide_retraining
from citeops.tasks.validate import steps as validate


@flow(name="retrain")
def retrain(
    force: bool = False,
    trigger: RetrainTrigger | None = None,
    train: TrainOverrides | None = None,  # type: ignore[valid-type]
    overrides: RetrainOverrides | None = None,
    online: OnlineMode | None = None,
) -> dict[str, Any]:
    """Retrain when the trigger fires (or ``force``), and promote the candidate if the
    gate passes. ``trigger``: the decision that started the run (from ``monitor``);
    ``train``: overrides of the ``train`` settings for this run; ``overrides``: of any
    settings section (``{"evaluate": {...}}``); ``online``: ``promote.online`` for this
    run (ab / shadow: the gated challenger starts its online phase instead of the swap,
    and the ``monitor`` flow concludes it). Returns the promotion record."""
    from citeops.flows.logs import stage_logs

    with stage_logs():
        return _retrain(force, given(trigger) or None, given(train), given(overrides), online)


def _retrain(
    force: bool,
    trigger: dict[str, Any] | None,
    train: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    online: str | None = None,
) -> dict[str, Any]:
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.release.lifecycle import PromotionRun
    from citeops.tasks.release.online import online_mode, record_online_start

    sections = dict(overrides or {}) | ({"train": train} if train else {})
    if online is not None:
        sections["promote"] = dict(sections.get("promote") or {}) | {"online": online}
    run = PromotionRun.start(trigger, overrides=sections or None)
    use_mlflow(run.settings)
    with run.locked():
        decision = decide_retraining(force or bool(trigger), run.overrides)
        if not run.should_go(decision):
            return run.finish("skipped", "; ".join(decision.reasons))
        data = train_steps.training_set(run.overrides)
        candidate = train_steps.train_candidate(data, run.overrides)
        challenger = train_steps.register_challenger(candidate, run.overrides)
        run.trained(data, candidate, challenger)
        validation = validate.validate_candidate(
            challenger.model_uri, run.champion_uri, data.holdout, run.overrides
        )
        with run.stage("gate_failed"):
            decision = validate.gate_candidate(validation, run.overrides)
        run.gated(decision, validation)
        if online_mode(run.settings):
            with run.stage("failed"):
                experiment = release.start_online_phase(challenger.version, run.overrides)
            return record_online_start(run, experiment)
        with run.stage("rolled_back"):
            promotion = release.promote_candidate(challenger.model_uri, run.overrides)
        run.baked(promotion)
        with run.stage("rolled_back"):  # the registry refused: every endpoint went back
            release.move_champion(challenger.version, run.overrides, promotion.endpoints)
        return run.finish("promoted", f"version {challenger.version} is live")
