"""The full-size ingest benchmark (slow): a million generated lines, accounted exactly,
in bounded memory."""

from __future__ import annotations

import pytest

from citeops.configs.settings import load_settings


@pytest.mark.slow
def test_million_lines_are_accounted_in_bounded_memory() -> None:
    from citeops.benchmarks.ingest import run_bench

    result = run_bench(load_settings(bench={"ingest_lines": 1_000_000}))
    report = result["report"]
    assert result["lines"] == report["lines"] == 1_000_000
    assert (
        report["accepted"] + report["duplicates"] + report["conflicts"] + report["quarantined"]
        == 1_000_000
    )
    # streamed in chunks: neither process holds the 700 MB input (measured: about 480 MB
    # for the store, 670 MB for the reader with GX and pandas)
    assert result["store_process_peak_rss_mb"] < 1000
    assert result["reader_process_peak_rss_mb"] < 1000
