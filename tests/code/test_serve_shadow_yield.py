"""Shadow scoring yields to the champion: it waits while the batcher is busy, scores in
small passes, on a background thread of lower priority."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from citeops.serving.batcher import MicroBatcher
from citeops.serving.shadow import ShadowCopy, ShadowQueue
from citeops.serving.slots import wrap_verifier
from tests.code.test_ab_serving import Lines
from tests.code.test_serve_bluegreen import FakeVerifier


def own_priority() -> tuple[int, int]:
    """(niceness, native thread id) of the calling thread."""
    tid = threading.get_native_id()
    return os.getpriority(os.PRIO_PROCESS, tid), tid


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority: Linux")
def test_background_work_runs_on_a_thread_of_lower_priority() -> None:
    async def scenario() -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        batcher = MicroBatcher(4, 0, 16, background_nice=5)
        batcher.start()
        try:
            live = await batcher.run_exclusive(own_priority)
            background = await batcher.run_background(own_priority)
            again = await batcher.run_background(own_priority)
        finally:
            await batcher.stop()
        return live, background, again

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    live, background, again = asyncio.run(scenario())
    assert live[0] == base
    assert background[0] == min(base + 5, 19) and background[1] != live[1]
    assert again == background  # one thread, lowered once


class Busy:
    """A stand-in for the micro-batcher: busy until told otherwise; records the passes."""

    depth = 0

    def __init__(self) -> None:
        self.idle = False
        self.sizes: list[int] = []

    async def run_background(self, fn: Any, model: Any, copies: list[Any]) -> Any:
        assert self.idle, "a shadow pass started while the champion was busy"
        self.sizes.append(len(copies))
        return fn(model, copies)


def test_shadow_copies_wait_for_an_idle_champion_and_go_in_small_passes() -> None:
    model = wrap_verifier(FakeVerifier("b", (0.1, 0.2, 0.7)), "model-b")  # type: ignore[arg-type]
    batcher, lines = Busy(), Lines()
    queue = ShadowQueue(batcher, lines, size=64, batch_size=3)  # type: ignore[arg-type]

    async def scenario() -> None:
        queue.start()
        for i in range(10):
            assert queue.offer(ShadowCopy(model, "claim", "evidence", {"request_id": str(i)}))
        await asyncio.sleep(0.05)
        assert batcher.sizes == [] and queue.waiting == 10  # the champion is busy
        batcher.idle = True
        for _ in range(200):
            if queue.counts.scored == 10:
                break
            await asyncio.sleep(0.005)
        await queue.stop()

    asyncio.run(scenario())
    assert batcher.sizes == [3, 3, 3, 1]
    assert sorted(int(line["request_id"]) for line in lines.lines) == list(range(10))
    assert all(line["shadow_prediction"] == "REFUTE" for line in lines.lines)
