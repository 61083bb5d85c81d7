"""The reader child process: chunks in order, errors carried back to the parent, and an
object left unread (another run committed it) read past, never out of step."""

from __future__ import annotations

from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from tests.ingest_support import feedback_line, write_part


def test_reader_child_streams_chunks_and_reports_errors(tmp_path: Path) -> None:
    from citeops.tasks.ingest.prefetch import Prefetcher
    from citeops.tasks.ingest.sources import LogObject, SourceError, list_objects

    path = write_part(
        tmp_path,
        "feedback",
        "2026-01-05",
        "a.jsonl",
        [feedback_line(claim=f"c{i}") for i in range(5)] + ["{bad"],
    )
    settings = load_settings(ingest={"chunk_lines": 2})
    (listed,) = list_objects(settings, str(tmp_path)).objects
    missing = LogObject(str(tmp_path / "gone.jsonl"), "feedback", 10)
    with Prefetcher(settings, [listed, missing]) as prefetcher:
        prefetcher.feed(frozenset({"c3"}))
        chunks = list(prefetcher.chunks(listed))
        assert [c.lines for c in chunks] == [2, 2, 2]
        rows = [row for c in chunks for row in c.rows]
        assert [row["claim"] for row in rows] == [f"c{i}" for i in range(5)]
        assert [row["leaked"] for row in rows] == [False, False, False, True, False]
        assert "raw" not in rows[0] and len(rows[0]["pair_key"]) == 32
        assert [r.reason for c in chunks for r in c.rejects] == ["bad_json"]
        assert prefetcher.identity(listed)[0] == path.stat().st_size
        with pytest.raises(SourceError, match="gone.jsonl"):
            list(prefetcher.chunks(missing))


def test_objects_left_unread_are_read_past_in_step(tmp_path: Path) -> None:
    from citeops.tasks.ingest.prefetch import Prefetcher, PrefetchError
    from citeops.tasks.ingest.sources import list_objects

    paths = [
        write_part(tmp_path, "feedback", "2026-01-05", f"part-{name}.jsonl", lines)
        for name, lines in (
            ("a", [feedback_line(claim=f"a{i}") for i in range(3)]),
            ("b", [feedback_line(claim=f"b{i}") for i in range(5)]),
            ("c", [feedback_line(claim=f"c{i}") for i in range(3)]),
        )
    ]
    settings = load_settings(ingest={"chunk_lines": 1})
    first, second, third = list_objects(settings, str(tmp_path)).objects
    with Prefetcher(settings, [first, second, third]) as prefetcher:
        prefetcher.feed(frozenset())
        prefetcher.chunks(first)  # never started: as when another run committed it first
        partly = prefetcher.chunks(second)
        assert next(partly).rows[0]["claim"] == "b0"  # then abandoned
        claims = [c.rows[0]["claim"] for c in prefetcher.chunks(third)]
        assert claims == ["c0", "c1", "c2"]
        assert prefetcher.identity(third)[0] == paths[2].stat().st_size
        assert prefetcher.identity(first)[0] == paths[0].stat().st_size
        with pytest.raises(PrefetchError, match="already taken"):
            next(prefetcher.chunks(second))
