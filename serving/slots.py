"""Blue and green model slots, the live pointer, its persisted state, and smoke checks.

Only the event loop changes the pointer, by one assignment, so a request reads one
consistent (slot, model) pair; a request keeps a reference to the model it started
with, so a swap never changes the model under a request in flight.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.serving.budget import BatchBudget
from citeops.serving.experiment import Experiment
from citeops.tasks.errors import CiteopsError
from citeops.tasks.inference.smoke import KNOWN_PAIRS

if TYPE_CHECKING:
    from citeops.tasks.inference.predictor import ClaimVerifier

SLOT_NAMES = ("blue", "green")
STATE_FILE = "serving-slots.json"

# Known pairs every candidate must score with well-formed outputs before it goes live.
SMOKE_PAIRS: tuple[tuple[str, str], ...] = KNOWN_PAIRS


class SlotError(CiteopsError):
    """A deploy or rollback cannot happen; the message says why."""


class DeployConflict(SlotError):
    """Another deploy or rollback is running (HTTP 409)."""


class CandidateRejected(SlotError):
    """The candidate failed to load or failed its smoke checks; live is untouched (HTTP 422)."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in a slot: the verifier plus where it came from."""

    verifier: ClaimVerifier
    model_uri: str
    pinned_uri: str  # what to load on restart (alias URIs resolved to their version)
    model_version: str
    loaded_at: str
    batching: BatchBudget | None = None  # None: the micro-batcher's default budget

    @property
    def runtime(self) -> str:
        """The inference runtime of this slot's model (torch, onnxruntime, openvino)."""
        return str(getattr(self.verifier, "runtime", "torch"))

    @property
    def precision(self) -> str:
        """The precision its runtime computes in (fp32, bf16, int8)."""
        verifier = self.verifier
        return str(getattr(verifier, "runtime_precision", getattr(verifier, "precision", "fp32")))

    @property
    def device(self) -> str:
        """Where its forward pass runs (cpu, cuda)."""
        return str(getattr(self.verifier, "runtime_device", "cpu"))

    @property
    def runtime_basis(self) -> str:
        """Why this runtime serves, as a short code (configured, calibrated, cuda, ...)."""
        return str(getattr(self.verifier, "runtime_basis", "configured"))

    def describe(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "pinned_uri": self.pinned_uri,
            "loaded_at": self.loaded_at,
            "runtime": self.runtime,
            "precision": self.precision,
            "device": self.device,
            "runtime_basis": self.runtime_basis,
            "runtime_reason": str(getattr(self.verifier, "runtime_reason", "")),
            "batching": self.batching.as_dict() if self.batching else None,
        }


def wrap_verifier(
    verifier: ClaimVerifier, model_uri: str, loaded_from: str | None = None
) -> LoadedModel:
    """Describe a loaded verifier. ``model_uri`` is what the caller asked for,
    ``loaded_from`` what was actually loaded (default: the same); alias URIs are pinned
    to the version they resolved to, so a restart reloads the same model."""
    version = verifier.model_version
    pinned = loaded_from or model_uri
    if version and pinned.startswith("models:/") and "@" in pinned:
        name = pinned[len("models:/") :].split("@", 1)[0]
        pinned = f"models:/{name}/{version}"
    return LoadedModel(
        verifier=verifier,
        model_uri=model_uri,
        pinned_uri=pinned,
        model_version=str(version) if version else Path(model_uri).name or model_uri,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


@dataclass
class SlotRecord:
    """What is persisted for one slot (the model itself is reloaded from ``pinned_uri``)."""

    model_uri: str
    pinned_uri: str
    model_version: str


@dataclass
class SlotState:
    """The persisted picture: which slot is live, what each slot holds, the last swap, and
    the online phase (A/B or shadow) running or last run, so that a restart keeps it."""

    live: str = "blue"
    slots: dict[str, SlotRecord] = field(default_factory=dict)
    last_swap: str | None = None
    last_swap_kind: str | None = None
    experiment: Experiment | None = None

    @classmethod
    def read(cls, path: Path) -> SlotState:
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text())
            slots = {k: SlotRecord(**v) for k, v in raw.get("slots", {}).items() if k in SLOT_NAMES}
            live = raw.get("live", "blue")
            experiment = raw.get("experiment")
            return cls(
                live if live in SLOT_NAMES else "blue",
                slots,
                raw.get("last_swap"),
                raw.get("last_swap_kind"),
                Experiment.from_dict(experiment) if experiment else None,
            )
        except (ValueError, TypeError) as error:
            raise SlotError(
                f"{path}: unreadable slot state ({error}); delete it to start fresh"
            ) from None

    def write(self, path: Path) -> None:
        """Write atomically (temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        payload = {
            "live": self.live,
            "slots": {k: asdict(v) for k, v in self.slots.items()},
            "last_swap": self.last_swap,
            "last_swap_kind": self.last_swap_kind,
            "experiment": self.experiment.as_dict() if self.experiment else None,
        }
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, path)


def other_slot(name: str) -> str:
    return SLOT_NAMES[1] if name == SLOT_NAMES[0] else SLOT_NAMES[0]


class Slots:
    """Two slots and the live pointer; persisted to ``state_path`` on every change."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.state = SlotState.read(state_path)
        self.models: dict[str, LoadedModel | None] = {name: None for name in SLOT_NAMES}
        self._live: tuple[str, LoadedModel | None] = (self.state.live, None)

    @property
    def live(self) -> tuple[str, LoadedModel | None]:
        """``(slot name, model)``, read as one value."""
        return self._live

    @property
    def idle_name(self) -> str:
        return other_slot(self._live[0])

    def install(self, slot: str, model: LoadedModel) -> None:
        """Put a model into a slot (does not change which slot is live)."""
        self.models[slot] = model
        self.state.slots[slot] = SlotRecord(model.model_uri, model.pinned_uri, model.model_version)
        if slot == self._live[0]:
            self._live = (slot, model)
        self.state.write(self.state_path)

    def switch_to(self, slot: str, kind: str) -> None:
        """Make ``slot`` live (it must hold a model) and persist the change."""
        model = self.models[slot]
        if model is None:
            raise SlotError(f"slot {slot} holds no model")
        self._live = (slot, model)
        self.state.live = slot
        self.state.last_swap = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.state.last_swap_kind = kind
        self.state.write(self.state_path)

    def set_experiment(self, experiment: Experiment | None) -> None:
        """Record the online phase (running, or the last one ended) and persist it."""
        self.state.experiment = experiment
        self.state.write(self.state_path)

    def describe(self) -> dict[str, Any]:
        live_name, live_model = self._live
        idle = self.idle_name
        idle_model = self.models[idle]
        idle_record = self.state.slots.get(idle)
        return {
            "live": {"slot": live_name, **(live_model.describe() if live_model else {})},
            "idle": {
                "slot": idle,
                "loaded": idle_model is not None,
                **(
                    idle_model.describe()
                    if idle_model
                    else (asdict(idle_record) if idle_record else {})
                ),
            },
            "last_swap": self.state.last_swap,
            "last_swap_kind": self.state.last_swap_kind,
        }


def check_smoke_outputs(probs: np.ndarray, labels: Sequence[str], expected: Sequence[str]) -> None:
    """Raise :class:`CandidateRejected` unless the outputs are well-formed probabilities
    over the expected labels."""
    if tuple(labels) != tuple(expected):
        raise CandidateRejected(f"candidate labels {list(labels)} differ from {list(expected)}")
    if probs.shape != (len(SMOKE_PAIRS), len(expected)):
        raise CandidateRejected(f"smoke check: output shape {probs.shape} is wrong")
    if not np.all(np.isfinite(probs)):
        raise CandidateRejected("smoke check: outputs are not finite")
    if np.any(probs < 0) or np.any(probs > 1) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise CandidateRejected("smoke check: outputs are not probabilities")


def agreement(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of positions where two label lists agree (1.0 for empty lists)."""
    if not a:
        return 1.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
