"""Blue-green model switching: the first load, deploy (load, smoke-check, switch) and
rollback, apart from HTTP so that it can be driven and tested directly.

:class:`BlueGreen` owns the two :class:`~citeops.serving.slots.Slots` and every change of
the live pointer. One deploy, rollback or experiment change runs at a time (a second one
gets :class:`DeployConflict` at once, never waits); a candidate goes live only after it
loaded and passed its smoke checks, so a refused candidate leaves the live slot untouched.

An online phase (:class:`~citeops.serving.experiment.Experiment`) puts a checked
challenger into the idle slot while the live slot keeps serving; it ends by promotion (the
same switch as a deploy) or abort (the challenger stays as the idle slot, as after a
rollback). While one runs, deploys and rollbacks are refused (:class:`ExperimentActive`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from citeops.serving.budget import batch_budget
from citeops.serving.experiment import Experiment
from citeops.serving.slots import (
    SMOKE_PAIRS,
    STATE_FILE,
    CandidateRejected,
    DeployConflict,
    LoadedModel,
    SlotError,
    Slots,
    agreement,
    check_smoke_outputs,
    wrap_verifier,
)
from citeops.tasks.data.multivers import LABELS
from citeops.tasks.inference.aliases import alias_uri
from citeops.tasks.inference.loading import load_verifier

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.serving.metrics import ServingMetrics
    from citeops.tasks.inference.predictor import ClaimVerifier

log = logging.getLogger(__name__)
Loader = Callable[[str], "ClaimVerifier"]
T = TypeVar("T")
RECENT_QUERIES = 64  # recent live predictions kept for the candidate agreement check
MIN_AGREEMENT_QUERIES = 10  # fewer recent queries: the agreement check is skipped


class ExperimentActive(DeployConflict):
    """A deploy, rollback or new experiment was asked for while an experiment runs (409)."""


class NoExperiment(SlotError):
    """An experiment was to be stopped, but none runs (HTTP 409)."""


class ExclusiveRunner(Protocol):
    """Runs a function on the inference thread between batches (the micro-batcher)."""

    def run_exclusive(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]: ...


@dataclass(frozen=True)
class Swap:
    """What a deploy or rollback changed: the live slot's description before and after."""

    before: dict[str, Any]
    after: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after}


def champion_uri(settings: Settings) -> str:
    """The URI served when none is given and no slot state exists."""
    return alias_uri(settings)


def startup_uri(settings: Settings, explicit: str | None) -> tuple[str, str]:
    """``(URI to load, URI to show)`` for the live slot at start: the explicit URI, else
    the persisted live slot (its pinned version), else the champion alias."""
    if explicit:
        return explicit, explicit
    state = Slots(settings.state_dir / STATE_FILE).state
    record = state.slots.get(state.live)
    if record is not None:
        return record.pinned_uri, record.model_uri
    return champion_uri(settings), champion_uri(settings)


def serving_model(
    settings: Settings, verifier: ClaimVerifier, model_uri: str, loaded_from: str | None = None
) -> LoadedModel:
    """:func:`wrap_verifier`, with the batching budget of the runtime the verifier serves
    on (``serve.batching.<runtime>`` over the ``serve.max_*`` defaults)."""
    loaded = wrap_verifier(verifier, model_uri, loaded_from)
    return dataclasses.replace(loaded, batching=batch_budget(settings.serve, loaded.runtime))


def default_loader(settings: Settings) -> Loader:
    """Load by URI or folder on the serving runtime (``serve.runtime``, at its precision;
    ``auto`` calibrates on this machine, see :mod:`citeops.tasks.inference.runtimes`); a
    checkpoint with missing or unexpected weights is refused by the loader."""

    def load(model_uri: str) -> ClaimVerifier:

        return load_verifier(model_uri, settings, runtime=settings.serve.runtime)

    return load


class BlueGreen:
    """Two model slots, the live pointer, and the operations that move it.

    Args:
        settings: ``serve.smoke_agreement_threshold``, ``serve.max_batch_size`` and the
            label set used when no model is live yet.
        slots: the slots and their persisted state.
        loader: loads a model URI into a verifier (runs in a worker thread).
        runner: runs smoke-check inference on the inference thread, between batches.
        metrics: deploy failures and swaps are counted here when given.
    """

    def __init__(
        self,
        settings: Settings,
        slots: Slots,
        loader: Loader,
        runner: ExclusiveRunner,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.slots = slots
        self.loader = loader
        self.runner = runner
        self.metrics = metrics
        self.load_error: str | None = None
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=RECENT_QUERIES)
        self._lock = asyncio.Lock()

    @property
    def live(self) -> tuple[str, LoadedModel | None]:
        """``(slot name, model)`` read as one value; the model is None until one loads."""
        return self.slots.live

    def expected_labels(self) -> tuple[str, ...]:
        """The live model's labels, or the data contract's when nothing is live."""
        live = self.slots.live[1]
        return tuple(live.verifier.labels) if live else LABELS

    def remember(self, model: LoadedModel, claim: str, evidence: str, label: str) -> None:
        """Keep a live prediction for the agreement check of the next candidate."""
        if model is self.slots.live[1]:
            self.recent.append((claim, evidence, label))

    # ---- start-up -----------------------------------------------------------------------
    async def load_initial(self, model_uri: str | None, initial: LoadedModel | None) -> None:
        """Fill the live slot (``initial``, else ``model_uri``, else the persisted live slot,
        else the champion), then the idle slot's persisted model so that rollback is
        instant. Failures are recorded in :attr:`load_error`, never raised."""
        live_name = self.slots.live[0]
        try:
            if initial is not None:
                self.slots.install(live_name, initial)
            else:
                load_uri, shown_uri = startup_uri(self.settings, model_uri)
                verifier = await asyncio.to_thread(self.loader, load_uri)
                model = serving_model(self.settings, verifier, shown_uri, load_uri)
                self.slots.install(live_name, model)
            log.info("live slot %s: %s", live_name, self.slots.live[1].model_uri)  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - reported by /ready and /version
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("live model failed to load: %s", self.load_error)
        await self._load_idle()

    async def _load_idle(self) -> None:
        idle_name = self.slots.idle_name
        record = self.slots.state.slots.get(idle_name)
        if record is None or self.slots.models[idle_name] is not None:
            return
        try:
            verifier = await asyncio.to_thread(self.loader, record.pinned_uri)
            self.slots.models[idle_name] = serving_model(
                self.settings, verifier, record.model_uri, record.pinned_uri
            )
        except Exception as error:  # noqa: BLE001 - rollback then says it is unavailable
            log.warning("idle slot %s (%s) not loaded: %s", idle_name, record.pinned_uri, error)

    # ---- checks -------------------------------------------------------------------------
    async def smoke_check(self, candidate: LoadedModel) -> None:
        """Well-formed outputs on the fixed pairs, and agreement with the live model on
        recent queries when ``serve.smoke_agreement_threshold`` > 0.

        Raises:
            CandidateRejected: with the reason.
        """
        verifier = candidate.verifier
        try:
            encoded = [verifier.encode_pair(c, e) for c, e in SMOKE_PAIRS]
            probs = await self.runner.run_exclusive(verifier.predict_encoded, encoded)
        except Exception as error:  # noqa: BLE001 - any failure rejects the candidate
            raise CandidateRejected(
                f"smoke check: the candidate raised {type(error).__name__}: {error}"
            ) from None
        check_smoke_outputs(np.asarray(probs), verifier.labels, self.expected_labels())
        threshold = self.settings.serve.smoke_agreement_threshold
        recent = list(self.recent)
        if threshold <= 0 or len(recent) < MIN_AGREEMENT_QUERIES:
            return
        labels = await self._labels_of(verifier, [(c, e) for c, e, _ in recent])
        score = agreement(labels, [label for _, _, label in recent])
        if score < threshold:
            raise CandidateRejected(
                f"smoke check: agreement with the live model on {len(recent)} recent queries "
                f"is {score:.3f}, below serve.smoke_agreement_threshold {threshold}"
            )

    async def _labels_of(self, verifier: ClaimVerifier, pairs: list[tuple[str, str]]) -> list[str]:
        labels: list[str] = []
        step = self.settings.serve.max_batch_size
        for start in range(0, len(pairs), step):
            chunk = [verifier.encode_pair(c, e) for c, e in pairs[start : start + step]]
            out = await self.runner.run_exclusive(verifier.predict_encoded, chunk)
            labels.extend(verifier.labels[int(i)] for i in np.asarray(out).argmax(axis=1))
        return labels

    # ---- switching ----------------------------------------------------------------------
    async def deploy(self, model_uri: str) -> Swap:
        """Load ``model_uri`` off the event loop, smoke-check it, install it in the idle
        slot and make it live.

        Raises:
            DeployConflict: another deploy or rollback is running, or
                (:class:`ExperimentActive`) an experiment runs.
            CandidateRejected: the candidate did not load or failed a smoke check; the
                live slot is untouched.
        """
        async with self._exclusive():
            self._refuse_during_experiment("deploy")
            before = self.slots.describe()["live"]
            candidate = await self._checked_candidate(model_uri)
            idle = self.slots.idle_name
            self.slots.install(idle, candidate)
            self.slots.switch_to(idle, "deploy")
            self.load_error = None
            self.recent.clear()
            self._count_swap("deploy")
            return Swap(before, self.slots.describe()["live"])

    async def rollback(self) -> Swap:
        """Make the idle slot's model live again.

        Raises:
            DeployConflict: another deploy or rollback is running, or an experiment runs.
            SlotError: the idle slot holds no model (or it is still loading).
        """
        async with self._exclusive():
            self._refuse_during_experiment("rollback")
            idle = self.slots.idle_name
            if self.slots.models[idle] is None:
                state = "is still loading" if idle in self.slots.state.slots else "holds no model"
                raise SlotError(f"nothing to roll back to: the idle slot {idle} {state}")
            before = self.slots.describe()["live"]
            self.slots.switch_to(idle, "rollback")
            self.recent.clear()
            self._count_swap("rollback")
            return Swap(before, self.slots.describe()["live"])

    async def _checked_candidate(self, model_uri: str) -> LoadedModel:
        """``model_uri`` loaded off the event loop and smoke-checked (failures counted).

        Raises:
            CandidateRejected: it did not load or failed a smoke check.
        """
        try:
            verifier = await asyncio.to_thread(self.loader, model_uri)
            candidate = serving_model(self.settings, verifier, model_uri)
            await self.smoke_check(candidate)
        except CandidateRejected:
            self._count_failure()
            raise
        except Exception as error:  # noqa: BLE001 - the reason goes back to the caller
            self._count_failure()
            raise CandidateRejected(f"cannot load {model_uri}: {error}") from None
        return candidate

    # ---- online phase -------------------------------------------------------------------
    @property
    def experiment(self) -> Experiment | None:
        """The running experiment, or None."""
        experiment = self.slots.state.experiment
        return experiment if experiment is not None and experiment.active else None

    async def start_experiment(
        self, model_uri: str, experiment_id: str, mode: str, share: float, seed: int
    ) -> Experiment:
        """Load ``model_uri`` and check it exactly as :meth:`deploy` does, install it in the
        idle slot as the challenger and record the experiment (persisted); the live slot
        keeps serving as the champion.

        Raises:
            ExperimentActive: an experiment already runs.
            DeployConflict: a deploy or rollback is running.
            SlotError: no model is live to compare the challenger with.
            CandidateRejected: the challenger did not load or failed a smoke check.
        """
        async with self._exclusive():
            self._refuse_during_experiment("a new experiment")
            live_name, live = self.slots.live
            if live is None:
                raise SlotError("no live model yet to compare a challenger with; retry")
            candidate = await self._checked_candidate(model_uri)
            idle = self.slots.idle_name
            self.slots.install(idle, candidate)
            experiment = Experiment(
                experiment_id=experiment_id,
                mode=mode,
                share=share,
                seed=seed,
                champion_slot=live_name,
                challenger_slot=idle,
                champion_version=live.model_version,
                challenger_version=candidate.model_version,
                started_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
            self.slots.set_experiment(experiment)
            log.info("experiment %s started: %s", experiment_id, experiment)
            return experiment

    async def stop_experiment(self, outcome: str) -> tuple[Experiment, Swap | None]:
        """End the running experiment: ``promote`` makes the challenger slot live (the
        switch of :meth:`deploy`), ``abort`` leaves the champion live and the challenger
        in the idle slot. Returns the ended record and, on promotion, the swap.

        Raises:
            NoExperiment: none runs.
            DeployConflict: another slot change is running.
            SlotError: promotion while the challenger slot holds no model (still loading
                after a restart).
        """
        async with self._exclusive():
            experiment = self.experiment
            if experiment is None:
                raise NoExperiment("no A/B experiment is running")
            ended = experiment.ended(outcome)
            if outcome != "promote":
                self.slots.set_experiment(ended)
                return ended, None
            challenger = experiment.challenger_slot
            if self.slots.models[challenger] is None or self.slots.live[0] == challenger:
                raise SlotError(f"cannot promote: the challenger slot {challenger} holds no model")
            before = self.slots.describe()["live"]
            self.slots.state.experiment = ended  # persisted with the switch, in one write
            self.slots.switch_to(challenger, "ab-promote")
            self.recent.clear()
            self._count_swap("ab-promote")
            return ended, Swap(before, self.slots.describe()["live"])

    def _refuse_during_experiment(self, what: str) -> None:
        experiment = self.experiment
        if experiment is not None:
            raise ExperimentActive(
                f"{what} refused: A/B experiment {experiment.experiment_id} is running; "
                "stop it first (citeops ab stop --promote|--abort, POST /admin/ab/stop)"
            )

    def _exclusive(self) -> asyncio.Lock:
        if self._lock.locked():
            raise DeployConflict("another deploy or rollback is in progress; try again")
        return self._lock

    def _count_failure(self) -> None:
        if self.metrics is not None:
            self.metrics.deploy_failures.inc()

    def _count_swap(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.swaps.labels(kind).inc()
