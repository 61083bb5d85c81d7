"""The reader child process: chunks in order, errors carried back to the parent."""

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
    (listed,) = list_objects(settings, str(tmp_path))
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
