"""Shadow scoring: the challenger scores copies of requests in the background.

The request path only offers a copy (:meth:`ShadowQueue.offer`) and never waits: the copy
joins a bounded queue, or, when the queue is full, is dropped and counted. A worker task
takes the copies in small batches (``serve.shadow_batch_size``) and scores them only while
the champion's batcher is idle (no pair waiting, no live batch running), on the batcher's
background thread, whose priority is lowered (``serve.shadow_nice``): a live batch that
arrives during a shadow pass runs beside it at full priority instead of waiting for it.
Live traffic goes first; under sustained load the queue fills and copies are dropped,
never delayed answers.

A mirrored request's query line is written by this queue, once, with the shadow
prediction added (``shadow_prediction``, ``shadow_model_version``), or without them when
the copy was dropped, failed, or was still waiting at shutdown: a query line is never
lost and never written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from citeops.serving.batcher import MicroBatcher
    from citeops.serving.logwriter import LogWriter
    from citeops.serving.slots import LoadedModel
    from citeops.tasks.classifier.preprocess import Evidence

log = logging.getLogger(__name__)
# Copies waiting for the challenger; past this, copies are dropped (and counted).
SHADOW_QUEUE_SIZE = 256
SHADOW_BATCH = 4  # copies per shadow pass (serve.shadow_batch_size's default)
IDLE_POLL_SECONDS = 0.002  # how often the worker looks whether live pairs still wait


@dataclass
class ShadowCopy:
    """One request for the challenger to score, and its query line to complete."""

    model: LoadedModel
    claim: str
    evidence: Evidence  # as the champion got it (one text, or its sentences)
    record: dict[str, Any]  # the query line, written once the shadow prediction is in


@dataclass
class ShadowCounts:
    """Copies scored and dropped (queue full, scoring failed) since the counts were reset."""

    scored: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"scored": self.scored, "dropped": self.dropped}


def score_copies(model: LoadedModel, copies: list[ShadowCopy]) -> np.ndarray:
    """The challenger's probabilities for each copy (encoding included: it runs on the
    inference thread, off the event loop)."""
    verifier = model.verifier
    encoded = [verifier.encode_pair(copy.claim, copy.evidence) for copy in copies]
    return np.asarray(verifier.predict_encoded(encoded))


class ShadowQueue:
    """A bounded queue of shadow copies and the worker that scores them.

    Args:
        batcher: runs the shadow passes on its inference thread (between live batches)
            and says whether live pairs wait (``depth``).
        writer: where the completed query lines go.
        size: the most copies waiting; past it a copy is dropped.
        on_outcome: called with ``scored`` or ``dropped`` for each copy (metrics).
        batch_size: the most copies per shadow pass.
    """

    def __init__(
        self,
        batcher: MicroBatcher,
        writer: LogWriter,
        size: int = SHADOW_QUEUE_SIZE,
        on_outcome: Any = None,
        batch_size: int = SHADOW_BATCH,
    ) -> None:
        self.batcher = batcher
        self.batch_size = batch_size
        self.writer = writer
        self.size = size
        self.on_outcome = on_outcome
        self.counts = ShadowCounts()
        self.high_water = 0  # the longest the queue has been
        self._queue: deque[ShadowCopy] = deque()
        self._scoring = 0  # copies taken from the queue, their lines not written yet
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Copies in the queue (at most its size)."""
        return len(self._queue)

    @property
    def depth(self) -> int:
        """Copies whose line is not written yet: waiting in the queue or being scored."""
        return len(self._queue) + self._scoring

    def reset_counts(self) -> None:
        self.counts = ShadowCounts()

    # ---- request side -------------------------------------------------------------------
    def offer(self, copy: ShadowCopy) -> bool:
        """Queue ``copy`` for the challenger; never blocks. When the queue is full (or the
        worker is not running) the copy is dropped, counted, and its query line written
        at once without the shadow fields. Returns whether it was queued."""
        if self._wakeup is None or len(self._queue) >= self.size:
            self._finish(copy, "dropped")
            return False
        self._queue.append(copy)
        self.high_water = max(self.high_water, len(self._queue))
        self._wakeup.set()
        return True

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="citeops-shadow")

    async def stop(self) -> None:
        """Stop the worker; copies still waiting get their query lines written without a
        shadow prediction (not counted as dropped: nothing was refused)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = self._wakeup = None
        while self._queue:
            self.writer.write("queries", self._queue.popleft().record)

    # ---- worker -------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            while not self._champion_idle():  # live pairs first
                await asyncio.sleep(IDLE_POLL_SECONDS)
            await self._score_next()

    def _champion_idle(self) -> bool:
        """No live pair waits (and, for the micro-batcher, no live batch runs)."""
        idle = getattr(self.batcher, "idle", None)
        return bool(idle) if idle is not None else self.batcher.depth == 0

    def _runner(self) -> Any:
        """Where shadow passes run: the batcher's low-priority background thread, else
        its inference thread between batches."""
        return getattr(self.batcher, "run_background", None) or self.batcher.run_exclusive

    async def _score_next(self) -> None:
        """Score the oldest copies of one model (at most ``batch_size``)."""
        model = self._queue[0].model
        copies: list[ShadowCopy] = []
        while self._queue and len(copies) < self.batch_size and self._queue[0].model is model:
            copies.append(self._queue.popleft())
        self._scoring = len(copies)
        try:
            probs = await self._runner()(score_copies, model, copies)
        except asyncio.CancelledError:
            self._queue.extendleft(reversed(copies))  # stop() writes their lines
            self._scoring = 0
            raise
        except Exception as error:  # noqa: BLE001 - the challenger failing never fails serving
            log.warning("shadow scoring of %d copies failed: %s", len(copies), error)
            for copy in copies:
                self._finish(copy, "dropped")
            self._scoring = 0
            return
        labels = model.verifier.labels
        for copy, row in zip(copies, probs, strict=True):
            copy.record["shadow_prediction"] = labels[int(np.argmax(row))]
            copy.record["shadow_model_version"] = model.model_version
            self._finish(copy, "scored")
        self._scoring = 0

    def _finish(self, copy: ShadowCopy, outcome: str) -> None:
        """Write the copy's query line and count its outcome."""
        self.writer.write("queries", copy.record)
        if outcome == "scored":
            self.counts.scored += 1
        else:
            self.counts.dropped += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)
