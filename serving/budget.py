"""The micro-batching budget of one model: what a forward pass may hold, per runtime.

Each model in a slot carries its own :class:`BatchBudget`, resolved for the runtime it
serves on (:func:`batch_budget`): a budget tuned for PyTorch need not suit OpenVINO or
ONNX Runtime. The micro-batcher (:mod:`citeops.serving.batcher`) groups pairs under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citeops.configs.settings import ServeSettings


@dataclass(frozen=True, slots=True)
class BatchBudget:
    """What one forward pass may hold: pairs, padded tokens (None: no limit), and how long
    the first request waits for others."""

    max_batch_size: int
    max_batch_tokens: int | None
    max_wait_ms: float

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_batch_tokens": self.max_batch_tokens,
            "max_wait_ms": self.max_wait_ms,
        }


def batch_budget(serve: ServeSettings, runtime: str) -> BatchBudget:
    """The budget for a model served on ``runtime``: ``serve.batching.<runtime>`` where it
    sets a value, else the ``serve.max_*`` default."""
    names = ("max_batch_size", "max_batch_tokens", "max_wait_ms")
    return BatchBudget(*(serve.batching_value(runtime, name) for name in names))
