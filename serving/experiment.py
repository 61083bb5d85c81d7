"""An online phase of a challenger on one endpoint (an A/B split or a shadow): its record,
and the arm each request goes to.

The arm of a request with a client id is sticky: a hash (BLAKE2b) of the experiment id
and the client id, read as a number in [0, 1), below ``share`` means the challenger; so a
client stays on its arm for the whole experiment, in every replica, and a new experiment
id draws the arms afresh. A request without a client id is drawn on its own, at the same
share, from a random generator seeded with the experiment's ``seed``. In shadow mode the
same draw says which requests the challenger scores a copy of.

This module holds no serving state: the record is persisted with the slot state
(:mod:`citeops.serving.slots`) and driven by :mod:`citeops.serving.online`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

from citeops.tasks.logcontract import ARMS

CHAMPION, CHALLENGER = ARMS
MODES = ("split", "shadow")
OUTCOMES = ("promote", "abort")
_SCALE = float(2**64)


def client_draw(experiment_id: str, client_id: str) -> float:
    """Where ``client_id`` falls in [0, 1) for ``experiment_id``: the same on every call,
    every process and every replica."""
    digest = blake2b(f"{experiment_id}\x00{client_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def client_arm(experiment_id: str, client_id: str, share: float) -> str:
    """The sticky arm of ``client_id``: the challenger for a ``share`` of the clients."""
    return CHALLENGER if client_draw(experiment_id, client_id) < share else CHAMPION


@dataclass(frozen=True)
class Experiment:
    """One online phase: which slot holds which arm, and how traffic is shared.

    ``ended_at`` and ``outcome`` (``promote`` | ``abort``) are set when it stops; the
    record of the last experiment is kept (inactive) until the next one starts.
    """

    experiment_id: str
    mode: str  # split | shadow
    share: float
    seed: int
    champion_slot: str
    challenger_slot: str
    champion_version: str
    challenger_version: str
    started_at: str  # ISO 8601, UTC
    ended_at: str | None = None
    outcome: str | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def ended(self, outcome: str) -> Experiment:
        """This experiment, stopped now with ``outcome``."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return replace(self, ended_at=now, outcome=outcome)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Experiment:
        """From :meth:`as_dict` (unknown keys ignored).

        Raises:
            TypeError, ValueError: a field is missing or malformed.
        """
        known = {f.name for f in fields(cls)}
        experiment = cls(**{k: v for k, v in raw.items() if k in known})
        if experiment.mode not in MODES or not 0.0 <= float(experiment.share) <= 1.0:
            raise ValueError(f"experiment {experiment.experiment_id}: bad mode or share")
        return experiment


class ArmDraw:
    """The arm of each request of one experiment: sticky by client id, else drawn per
    request from a generator seeded with the experiment's seed. Used on the event loop
    only (the generator is not shared across threads)."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self._rng = random.Random(experiment.seed)

    def arm(self, client_id: str | None) -> str:
        """``challenger`` for a ``share`` of the clients (or of the anonymous requests)."""
        share = self.experiment.share
        if client_id:
            return client_arm(self.experiment.experiment_id, client_id, share)
        return CHALLENGER if self._rng.random() < share else CHAMPION
