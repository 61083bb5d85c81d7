"""The online phase as the serving app runs it: which model answers each request, the
shadow copies, the counts, and the admin operations behind ``/admin/ab``.

Slot changes (loading and checking the challenger, promotion, abort) are
:class:`~citeops.serving.bluegreen.BlueGreen`'s, so they exclude deploys and rollbacks and
persist with the slot state; the experiment survives a restart (the challenger is
reloaded into its slot like any idle model; until it is, every request goes to the
champion). The per-arm and shadow counts are this process's, since the experiment started
or the process did; the logs hold the full record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from citeops.serving.experiment import CHALLENGER, CHAMPION, ArmDraw, Experiment
from citeops.serving.shadow import ShadowCopy, ShadowQueue

if TYPE_CHECKING:
    from citeops.serving.bluegreen import BlueGreen
    from citeops.serving.slots import LoadedModel
    from citeops.tasks.classifier.preprocess import Evidence


@dataclass(frozen=True)
class Route:
    """Who answers one request: its arm, the slot and model that answer, and the model
    that scores a copy of it in the shadow (None: no copy)."""

    arm: str
    slot: str
    model: LoadedModel
    shadow: LoadedModel | None = None


def new_experiment_id() -> str:
    return f"ab-{uuid.uuid4().hex[:12]}"


class OnlinePhase:
    """Routes requests during an experiment and runs ``/admin/ab``'s operations."""

    def __init__(self, bluegreen: BlueGreen, shadow: ShadowQueue) -> None:
        self.bluegreen = bluegreen
        self.shadow = shadow
        self.requests = {CHAMPION: 0, CHALLENGER: 0}
        self._draw: ArmDraw | None = None

    @property
    def experiment(self) -> Experiment | None:
        """The running experiment, or None."""
        return self.bluegreen.experiment

    # ---- request path -------------------------------------------------------------------
    def route(self, client_id: str | None, live_slot: str, live: LoadedModel) -> Route:
        """The arm and model for one request (all pairs of a batch request share it).

        Without an experiment, or while its challenger is not in its slot (still loading
        after a restart), the live model answers as the champion. ``split``: the
        challenger answers its share (:class:`~citeops.serving.experiment.ArmDraw`);
        ``shadow``: the champion answers and the challenger scores a copy of that share.
        """
        experiment = self.experiment
        challenger = self._challenger(experiment, live_slot)
        if experiment is None or challenger is None:
            return Route(CHAMPION, live_slot, live)
        arm = self._draw_for(experiment).arm(client_id)
        if experiment.mode == "shadow":
            return Route(CHAMPION, live_slot, live, challenger if arm == CHALLENGER else None)
        if arm == CHALLENGER:
            return Route(CHALLENGER, experiment.challenger_slot, challenger)
        return Route(CHAMPION, live_slot, live)

    def _challenger(self, experiment: Experiment | None, live_slot: str) -> LoadedModel | None:
        if experiment is None or experiment.challenger_slot == live_slot:
            return None
        model = self.bluegreen.slots.models[experiment.challenger_slot]
        if model is None or model.model_version != experiment.challenger_version:
            return None
        return model

    def _draw_for(self, experiment: Experiment) -> ArmDraw:
        if self._draw is None or self._draw.experiment != experiment:
            self._draw = ArmDraw(experiment)
        return self._draw

    def answered(self, route: Route, pairs: int) -> None:
        """Count ``pairs`` answered on ``route``'s arm (while an experiment runs)."""
        if self.experiment is not None:
            self.requests[route.arm] += pairs

    def mirror(self, route: Route, claim: str, evidence: Evidence, record: dict[str, Any]) -> None:
        """Offer the challenger of ``route`` a copy of the request; the shadow queue then
        writes its query line ``record`` (with the shadow prediction, or without when the
        copy is dropped)."""
        assert route.shadow is not None
        self.shadow.offer(ShadowCopy(route.shadow, claim, evidence, record))

    # ---- admin --------------------------------------------------------------------------
    async def start(
        self, model_uri: str, share: float, mode: str, experiment_id: str | None, seed: int
    ) -> dict[str, Any]:
        """Load and check the challenger into the idle slot and start the experiment;
        returns :meth:`status`. Raises what
        :meth:`~citeops.serving.bluegreen.BlueGreen.start_experiment` raises."""
        await self.bluegreen.start_experiment(
            model_uri, experiment_id or new_experiment_id(), mode, share, seed
        )
        self.requests = {CHAMPION: 0, CHALLENGER: 0}
        self.shadow.reset_counts()
        return self.status()

    async def stop(self, action: str) -> dict[str, Any]:
        """End the experiment (``promote`` | ``abort``); returns :meth:`status` after it,
        with the swap on promotion and the slots as they are now."""
        ended, swap = await self.bluegreen.stop_experiment(action)
        status = self.status(ended)
        status["swap"] = swap.as_dict() if swap else None
        status["slots"] = self.bluegreen.slots.describe()
        return status

    def status(self, experiment: Experiment | None = None) -> dict[str, Any]:
        """``GET /admin/ab``: the running experiment (else the last one, inactive), its
        counts, and the shadow queue's state."""
        experiment = experiment or self.bluegreen.slots.state.experiment
        record: dict[str, Any] = experiment.as_dict() if experiment else {}
        challenger_slot = record.get("challenger_slot")
        return {
            "active": bool(experiment and experiment.active),
            **{name: record.get(name) for name in STATUS_FIELDS},
            "challenger_loaded": bool(
                challenger_slot and self.bluegreen.slots.models[challenger_slot] is not None
            ),
            "requests": dict(self.requests),
            "shadow": {
                **self.shadow.counts.as_dict(),
                "queued": self.shadow.depth,
                "queue_size": self.shadow.size,
            },
        }


STATUS_FIELDS = (
    "experiment_id",
    "mode",
    "share",
    "seed",
    "champion_version",
    "challenger_version",
    "champion_slot",
    "challenger_slot",
    "started_at",
    "ended_at",
    "outcome",
)
