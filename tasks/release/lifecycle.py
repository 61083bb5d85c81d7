"""The bookkeeping around promotion: the record of a retrain run as it goes, a manual
promotion of an existing version, and the rollback of the last promotion.

:class:`PromotionRun` keeps the :class:`~citeops.tasks.store.promotions.PromotionRecord`
of one ``retrain`` flow run up to date (stored at the start, at each stage, and at the
end), holds the one-at-a-time lock, and turns a stage's exception into the record's
outcome before letting it fail the flow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from citeops.configs.settings import load_settings
from citeops.tasks.errors import CiteopsError
from citeops.tasks.inference.aliases import CHAMPION, PREVIOUS, model_uri_for
from citeops.tasks.registry.describe import (
    OUTCOME_TAG,
    PROMOTION_TAG,
    VALIDATION_RUN_TAG,
    set_section,
    tag_run,
    tag_version,
    version_tags,
)
from citeops.tasks.registry.register import get_version_by_alias, require_version, set_alias
from citeops.tasks.release.endpoints import serving_endpoints
from citeops.tasks.release.promote import (
    PromotionFailed,
    admin_client,
    move_aliases_or_roll_back,
    one_line,
    promote_blue_green,
    put_back,
)
from citeops.tasks.release.reconcile import reconcile
from citeops.tasks.store.promotions import (
    PromotionRecord,
    finish_record,
    hold_lock,
    last_promotion,
    save_record,
)
from citeops.tasks.tracking import tracking_unavailable
from citeops.tasks.train.fit import describe_trained
from citeops.tasks.train.training_set import build_training_set
from citeops.tasks.validate.compare import judge, validate_against_champion
from citeops.tasks.validate.gate import require_gate

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.registry.register import RegisteredModel
    from citeops.tasks.release.promote import Promotion
    from citeops.tasks.train.fit import Candidate
    from citeops.tasks.train.training_set import TrainingSet
    from citeops.tasks.trigger.decision import RetrainDecision
    from citeops.tasks.validate.compare import Validation
    from citeops.tasks.validate.gate import GateDecision

log = logging.getLogger(__name__)


class NothingToRollBack(CiteopsError):
    """No promotion to undo, or no previous version to go back to."""


def release_text(record: PromotionRecord) -> str:
    """The "Release" section of a version description: outcome, by whom, when."""
    import getpass

    when = (record.finished_at or record.started_at).isoformat(timespec="seconds")
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "an unnamed user"
    by = f"Prefect flow run `{record.flow_run_id}`" if record.flow_run_id else user
    previous = f", previous champion v{record.previous_version}" if record.previous_version else ""
    return (
        f"**{record.outcome}** by {record.kind} ({by}) at {when}{previous}: {record.detail}\n\n"
        f"Promotion record #{record.id} (`citeops history`)."
    )


def promotion_outcome(error: BaseException, default: str) -> str:
    """``failed`` for a refused deploy that switched no endpoint (nothing to roll back),
    else ``default``."""

    if isinstance(error, PromotionFailed) and not error.rolled_back:
        return "failed"
    return default


def gate_record(decision: GateDecision) -> dict[str, Any]:
    """The decision as stored in a promotion record, with its terminal table."""
    return decision.to_dict() | {"text_table": decision.text_table()}


def flow_run_id() -> str | None:
    """The current Prefect flow run's id, ``None`` outside a flow run."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None


def load(overrides: dict[str, Any] | None = None) -> Settings:

    return load_settings(**(overrides or {}))


@dataclass
class PromotionRun:
    """One retrain or promotion run: its record (kept up to date), lock and overrides."""

    settings: Settings
    record: PromotionRecord
    overrides: dict[str, Any] | None = None
    champion_uri: str | None = None
    finished: bool = field(default=False)

    @classmethod
    def start(
        cls,
        trigger: dict[str, Any] | None,
        overrides: dict[str, Any] | None = None,
        kind: str = "retrain",
    ) -> PromotionRun:
        """Store a ``running`` record naming the champion and what started the run."""
        return cls.open(load(overrides), kind, trigger, overrides=overrides)

    @classmethod
    def open(
        cls,
        settings: Settings,
        kind: str,
        trigger: dict[str, Any] | None,
        version: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> PromotionRun:
        """:meth:`start` with settings already built (a promotion of ``version``)."""

        champion = get_version_by_alias(settings, CHAMPION)
        record = PromotionRecord(
            kind=kind,
            version=version,
            previous_version=champion,
            trigger=dict(trigger or {}),
            flow_run_id=flow_run_id(),
        )
        save_record(settings, record)
        uri = model_uri_for(settings, champion) if champion else None
        return cls(settings, record, overrides, uri)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the retrain lock for :meth:`recorded`, after putting right what a killed
        run left (:func:`~citeops.tasks.release.reconcile.reconcile`)."""

        with self.recorded(), hold_lock(self.settings):
            reconcile(self.settings, lock_held=True)
            yield

    @contextmanager
    def recorded(self) -> Iterator[None]:
        """A failure that no stage recorded ends the run as ``failed``."""
        try:
            yield
        except BaseException as error:
            outage = tracking_unavailable(self.settings, error)
            if not self.finished:
                detail = str(outage) if outage else f"{type(error).__name__}: {one_line(error)}"
                self.finish("failed", detail)
            if outage is not None:  # one line for the user, not MLflow's traceback
                raise outage from None
            raise

    @contextmanager
    def stage(self, outcome: str) -> Iterator[None]:
        """A stage whose :class:`CiteopsError` ends the run with ``outcome``."""
        try:
            yield
        except CiteopsError as error:
            decision = getattr(error, "decision", None)
            if decision is not None:
                self.record.gate = gate_record(decision)
            bake = getattr(error, "bake", None)
            if bake:
                self.record.bake = {"endpoints": [b.to_dict() for b in bake]}
            self.finish(promotion_outcome(error, outcome), str(error))
            raise

    def should_go(self, decision: RetrainDecision) -> bool:
        if not self.record.trigger:
            self.record.trigger = decision.to_dict()
        return decision.retrain

    def trained(self, data: TrainingSet, candidate: Candidate, challenger: RegisteredModel) -> None:
        """Record the challenger; in MLflow, name its run ``retrain v3 · feedback+drift``
        and describe its version with the trigger and the data (linked to this record)."""

        self.record.version = challenger.version
        self.record.data = data.summary()
        self.record.cost_usd = candidate.cost_usd
        self.record.mlflow_run_ids["train"] = candidate.run_id
        save_record(self.settings, self.record)
        causes = "+".join(self.record.trigger.get("causes", [])) or "manual"
        with self.describing():
            describe_trained(
                self.settings,
                challenger.version,
                candidate,
                f"{self.record.kind} v{challenger.version} · {causes}",
                data,
                self.record.trigger,
                {PROMOTION_TAG: str(self.record.id)},
            )

    def gated(self, decision: GateDecision, validation: Validation) -> None:
        self.record.gate = gate_record(decision)
        if validation.run_id:
            self.record.mlflow_run_ids["validate"] = validation.run_id
        save_record(self.settings, self.record)

    def baked(self, promotion: Promotion) -> None:
        self.record.bake = {"endpoints": [b.to_dict() for b in promotion.bake]}
        save_record(self.settings, self.record)

    def finish(self, outcome: str, detail: str) -> dict[str, Any]:
        self.finished = True
        finish_record(self.settings, self.record, outcome, detail)
        with self.describing():
            self.describe_release()
        log.info("%s %s: %s", self.record.kind, outcome, detail)
        return self.record.to_dict()

    @contextmanager
    def describing(self) -> Iterator[None]:
        """MLflow bookkeeping that must not fail the run it describes: a failure is logged."""

        try:
            yield
        except Exception as error:  # an unwritable or unreachable store raises many kinds
            log.warning(
                "MLflow description of %s not updated: %s", self.record.kind, one_line(error)
            )

    def describe_release(self) -> None:
        """The version's "Release" section (outcome, who, when, the record) and the links
        of record, validation run and version (tags ``citeops.promotion_id``)."""

        record, version = self.record, self.record.version
        if not version or record.outcome == "skipped":
            return
        promotion = {PROMOTION_TAG: str(record.id)}
        validation_run = version_tags(self.settings, version).get(VALIDATION_RUN_TAG)
        if validation_run:
            tag_run(self.settings, validation_run, promotion)
            if record.mlflow_run_ids.get("validate") != validation_run:
                record.mlflow_run_ids["validate"] = validation_run
                save_record(self.settings, record)
        tag_version(self.settings, version, promotion | {OUTCOME_TAG: record.outcome})
        set_section(self.settings, version, "Release", release_text(record))


def promote_version(
    settings: Settings, version: str, skip_gate: bool = False, reason: str = "manual"
) -> PromotionRecord:
    """Promote an existing registered version: gate against the champion (unless
    ``skip_gate``, recorded as such), deploy to every endpoint with bake, move aliases.

    Raises:
        RegistryError: the version does not exist.
        GateFailed, PromotionFailed, BakeFailed: refused; recorded, nothing moved.
    """

    require_version(settings, version)
    reconcile(settings, lock_held=True)
    trigger = {"causes": ["manual"], "reasons": [reason], "skip_gate": skip_gate}
    run = PromotionRun.open(settings, "promote", trigger, version=str(version))
    uri = model_uri_for(settings, version)
    with run.recorded():
        if skip_gate:
            run.record.gate = {"skipped": True, "passed": None, "reasons": ["--skip-gate"]}
        else:
            holdout = build_training_set(settings).holdout
            validation = validate_against_champion(settings, uri, run.champion_uri, holdout)
            with run.stage("gate_failed"):
                decision = judge(settings, validation)
                run.record.gate = gate_record(decision)
                require_gate(decision)
            run.gated(decision, validation)
        with run.stage("rolled_back"):
            promotion = promote_blue_green(settings, uri)
        run.baked(promotion)
        with run.stage("rolled_back"):
            move_aliases_or_roll_back(settings, str(version), promotion.endpoints)
        run.finish("promoted", f"version {version} is live")
    return run.record


def rollback_last(settings: Settings) -> PromotionRecord:
    """Undo the last promotion: every endpoint back to the previous model, ``champion``
    back to the previous version (``previous`` then names the version rolled back).

    Raises:
        NothingToRollBack: no promotion recorded, or it had no previous version.
        PromotionFailed: an endpoint could neither roll back nor deploy the previous one.
    """

    reconcile(settings, lock_held=True)
    last = last_promotion(settings)
    if last is None:
        raise NothingToRollBack("no promotion recorded: nothing to roll back")
    target = last.previous_version or get_version_by_alias(settings, PREVIOUS)
    if target is None:
        raise NothingToRollBack(
            f"the last promotion (version {last.version}) had no previous champion to go back to"
        )
    record = PromotionRecord(
        kind="rollback",
        version=target,
        previous_version=last.version,
        trigger={"causes": ["manual"], "reasons": [f"undo promotion #{last.id}"]},
        flow_run_id=flow_run_id(),
    )
    save_record(settings, record)
    endpoints: list[dict[str, Any]] = []
    with admin_client(settings) as client:
        for endpoint in serving_endpoints(settings):
            try:
                how = put_back(settings, client, endpoint, str(target))
            except PromotionFailed as error:
                finish_record(settings, record, "failed", str(error))
                raise
            endpoints.append({"endpoint": endpoint, "how": how, "live": str(target)})
            log.info("%s back on version %s (%s)", endpoint, target, how)
    set_alias(settings, target, CHAMPION)
    if last.version:
        set_alias(settings, last.version, PREVIOUS)
    record.bake = {"endpoints": endpoints}
    return finish_record(settings, record, "rollback", f"version {target} is live again")
