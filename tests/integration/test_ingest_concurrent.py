"""Two ingests of the same log root at once: the later one skips and reports the objects
the other committed first, its reader child never falls out of step, and the store ends
as one clean run leaves it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from citeops.configs.settings import load_settings
from tests.ingest_support import feedback_line, store_snapshot, write_part

pytestmark = pytest.mark.integration

PART_LINES = 6


def test_second_ingest_skips_what_the_first_holds_and_stays_in_step(
    citeops_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.tasks.ingest import pipeline

    root = citeops_env / "logs"
    parts = [
        write_part(
            root,
            "feedback",
            "2026-01-05",
            f"part-{name}.jsonl",
            [feedback_line(claim=f"claim {name}{i}") for i in range(PART_LINES)],
        )
        for name in "abc"
    ]
    inline = load_settings(ingest={"chunk_lines": 2})
    prefetched = load_settings(ingest={"chunk_lines": 2, "parallel_parse_min_bytes": 0})

    # The first run ingests part-a alone and holds its transaction open until the second
    # run (the whole root, through the reader child) has planned: the second then finds
    # part-a committed when it comes to store it, and goes on to part-b.
    second_planned = threading.Event()
    real_plan, real_chunk = pipeline.plan_objects, pipeline.Progress.chunk
    reports: dict[str, pipeline.IngestReport] = {}
    errors: list[BaseException] = []

    def run(name: str, settings: Any, source: str | None) -> None:
        try:
            reports[name] = pipeline.ingest(settings, source)
        except BaseException as error:  # noqa: BLE001 - re-raised by the test thread
            errors.append(error)
            second_planned.set()

    second = threading.Thread(target=run, args=("second", prefetched, None), name="second")

    def plan_objects(*args: Any, **kwargs: Any) -> pipeline.Plan:
        plan = real_plan(*args, **kwargs)
        if threading.current_thread() is second:
            second_planned.set()
        return plan

    def chunk(self: pipeline.Progress, lines: int) -> None:
        if threading.current_thread() is not second and second.ident is None:
            second.start()
            assert second_planned.wait(timeout=180), "the second ingest never planned"
        real_chunk(self, lines)

    monkeypatch.setattr(pipeline, "plan_objects", plan_objects)
    monkeypatch.setattr(pipeline.Progress, "chunk", chunk)
    first = threading.Thread(target=run, args=("first", inline, str(parts[0])), name="first")
    first.start()
    first.join(timeout=300)
    second.join(timeout=300)
    assert not errors, errors

    taken = str(parts[0])
    assert reports["first"].to_dict()["objects"] == 1 and reports["first"].skipped == []
    report = reports["second"].to_dict()
    assert report["skipped"] == [
        {"uri": taken, "reason": "ingested by another run at the same time"}
    ]
    assert (report["objects"], report["lines"], report["accepted"]) == (2, 12, 12)
    together = store_snapshot(inline)

    monkeypatch.setenv("CITEOPS_STORE_URL", f"sqlite:///{tmp_path / 'clean.db'}")
    clean_settings = load_settings(ingest={"chunk_lines": 2})
    assert pipeline.ingest(clean_settings).to_dict()["accepted"] == 3 * PART_LINES
    assert store_snapshot(clean_settings) == together
