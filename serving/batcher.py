"""Micro-batching: requests wait at most ``max_wait_ms`` (and only while more keep
arriving) to be grouped, by model and by length, into forward passes run one at a time
on a single inference thread; requests that arrive during a pass form the next one.

Each model in a slot carries its own
:class:`~citeops.serving.budget.BatchBudget` (pairs, padded tokens and wait per pass),
resolved for the runtime it serves on (:mod:`citeops.serving.budget`).

The queue is bounded: :meth:`MicroBatcher.submit` raises :class:`QueueFull` at once when
``queue_size`` pairs are already waiting (the API answers 503 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from citeops.serving.budget import BatchBudget, batch_budget  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from citeops.serving.metrics import ServingMetrics
    from citeops.serving.slots import LoadedModel

T = TypeVar("T")
log = logging.getLogger("citeops.serving.batcher")


class QueueFull(Exception):
    """The bounded request queue is full; retry later."""


@dataclass(slots=True)
class _Pending:
    model: LoadedModel
    ids: Sequence[int]
    future: asyncio.Future[np.ndarray]


def lower_priority(nice: int) -> None:
    """Add ``nice`` to the calling thread's niceness (Linux: per thread); a platform or
    a sandbox that refuses it leaves the priority as it is."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(current + nice, 19))
    except OSError as error:
        log.warning("background inference thread keeps its priority: %s", error)


def plan_batches(
    lengths: Sequence[int], max_batch: int, max_pad_ratio: float, max_tokens: int | None = None
) -> list[list[int]]:
    """Split positions into batches of similar length.

    Positions are sorted by length; a batch closes when it holds ``max_batch`` pairs,
    when adding the next (longer) pair would make the padded batch more than
    ``max_pad_ratio`` times its real tokens, or more than ``max_tokens`` padded tokens
    (on CPU, big batches of long pairs fall out of cache and run slower per pair than
    small ones). A pair longer than ``max_tokens`` goes alone. Returns lists of positions.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for pos in order:
        length = lengths[pos]
        if current:
            padded = length * (len(current) + 1)
            too_many = max_tokens is not None and padded > max_tokens
            if len(current) >= max_batch or padded > max_pad_ratio * (tokens + length) or too_many:
                batches.append(current)
                current, tokens = [], 0
        current.append(pos)
        tokens += length
    if current:
        batches.append(current)
    return batches


class MicroBatcher:
    """Collects single pairs into length-grouped batches; one inference thread.

    The ``max_*`` arguments are the default budget, for a model that carries none
    (``LoadedModel.batching``); a model's own budget decides how its pairs are grouped.
    """

    def __init__(
        self,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        metrics: ServingMetrics | None = None,
        max_pad_ratio: float = 1.3,
        max_batch_tokens: int | None = None,
        background_nice: int = 10,
    ) -> None:
        """``background_nice``: niceness added to the thread of :meth:`run_background`."""
        self.default = BatchBudget(max_batch_size, max_batch_tokens, max_wait_ms)
        self.queue_size = queue_size
        self.max_pad_ratio = max_pad_ratio
        self.metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citeops-infer")
        self.background_nice = background_nice
        self._background: ThreadPoolExecutor | None = None  # made at the first use
        self.last_batch_done: float = time.monotonic()
        self.busy_since: float | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="citeops-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(QueueFull("server shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)
        if self._background is not None:
            self._background.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """No pair waits and no live batch is being run."""
        return not self._queue and self.busy_since is None

    # ---- request side -------------------------------------------------------------------
    def submit_many(
        self, model: LoadedModel, encoded: Sequence[Sequence[int]]
    ) -> list[asyncio.Future[np.ndarray]]:
        """Queue pairs for ``model``; futures resolve to each pair's probabilities.

        Raises:
            QueueFull: fewer than ``len(encoded)`` places are free (nothing is queued).
        """
        if len(self._queue) + len(encoded) > self.queue_size:
            raise QueueFull(f"{len(self._queue)} pairs already waiting")
        loop = asyncio.get_running_loop()
        futures = []
        for ids in encoded:
            future: asyncio.Future[np.ndarray] = loop.create_future()
            self._queue.append(_Pending(model, ids, future))
            futures.append(future)
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))
        assert self._wakeup is not None
        self._wakeup.set()
        return futures

    async def run_exclusive(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the inference thread, between batches (for smoke checks)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_background(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on a background inference thread of lower priority
        (``background_nice``): work that must yield to live batches (shadow scoring)
        runs beside them instead of ahead of them. PyTorch's OpenMP workers, started by
        that thread, inherit its priority."""
        if self._background is None:
            self._background = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="citeops-background",
                initializer=lower_priority,
                initargs=(self.background_nice,),
            )
        return await asyncio.get_running_loop().run_in_executor(self._background, fn, *args)

    # ---- batching loop ------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._gather_burst()
            taken = self._take()
            for batch_items in self._group(taken):
                await self._infer(loop, batch_items)

    def budget_of(self, model: LoadedModel) -> BatchBudget:
        """The budget ``model``'s pairs are batched under (its own, else the default)."""
        return model.batching or self.default

    def _head_budget(self) -> BatchBudget:
        """The budget of the oldest waiting pair's model (the live one, but at a swap)."""
        return self.budget_of(self._queue[0].model) if self._queue else self.default

    async def _gather_burst(self) -> None:
        """Let requests that already arrived join the batch; wait up to ``max_wait_ms``
        only when more keep coming (a lone request on an idle server goes at once)."""
        seen = len(self._queue)
        await asyncio.sleep(0)
        budget = self._head_budget()
        wait = budget.max_wait_ms / 1000.0
        if wait <= 0 or len(self._queue) == seen:
            return
        deadline = time.monotonic() + wait
        while len(self._queue) < budget.max_batch_size and time.monotonic() < deadline:
            seen = len(self._queue)
            await asyncio.sleep(min(0.001, wait))
            if len(self._queue) == seen:
                return

    def _take(self) -> list[_Pending]:
        """Everything waiting (a few batches' worth at most), oldest first."""
        limit = self._head_budget().max_batch_size * 4
        taken = []
        while self._queue and len(taken) < limit:
            item = self._queue.popleft()
            if not item.future.cancelled():
                taken.append(item)
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))
        return taken

    def _group(self, items: list[_Pending]) -> list[list[_Pending]]:
        """Per model (a swap can leave two models in one take), then by length."""
        by_model: dict[int, list[_Pending]] = {}
        for item in items:
            by_model.setdefault(id(item.model), []).append(item)
        groups = []
        for same_model in by_model.values():
            lengths = [len(item.ids) for item in same_model]
            budget = self.budget_of(same_model[0].model)
            plan = plan_batches(
                lengths, budget.max_batch_size, self.max_pad_ratio, budget.max_batch_tokens
            )
            for positions in plan:
                groups.append([same_model[p] for p in positions])
        return groups

    async def _infer(self, loop: asyncio.AbstractEventLoop, items: list[_Pending]) -> None:
        verifier = items[0].model.verifier
        start = time.perf_counter()
        self.busy_since = time.monotonic()
        try:
            probs = await loop.run_in_executor(
                self._executor, verifier.predict_encoded, [item.ids for item in items]
            )
        except Exception as error:  # noqa: BLE001 - the requests get the error, the loop lives
            log.exception("inference failed for a batch of %d", len(items))
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            self.busy_since = None
            self.last_batch_done = time.monotonic()
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(items))
            self.metrics.batch_seconds.observe(time.perf_counter() - start)
        for item, row in zip(items, probs, strict=True):
            if not item.future.done():
                item.future.set_result(row)
