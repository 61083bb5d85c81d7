"""`citeops bench ingest`: a small run through the CLI checks its own tally; the full-size
run (slow) accounts a million generated lines exactly, in bounded memory."""

from __future__ import annotations

import json

import pytest

from citeops.configs.settings import load_settings


def test_bench_ingest_small_run_checks_its_tally(capsys: pytest.CaptureFixture[str]) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    code = run_cli(app, ["bench", "ingest", "--lines", "2000", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["lines"] == 2000
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0
    assert result["baseline"]["lines"] == 2000
    report = result["report"]
    assert report["quarantined"] > 0 and report["duplicates"] > 0


def test_bench_ingest_workload_comes_from_the_bench_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from citeops.benchmarks.settings import load_bench_settings

    monkeypatch.setenv("CITEOPS_BENCH__INGEST_PART_LINES", "2")
    bench = load_bench_settings(ingest_lines=5)
    assert (bench.ingest_lines, bench.ingest_part_lines) == (5, 2)
    settings = load_settings()  # the product settings ignore CITEOPS_BENCH__*
    assert "bench" not in type(settings).model_fields
    assert not any(name.startswith("bench") for name in type(settings.ingest).model_fields)


@pytest.mark.slow
def test_million_lines_are_accounted_in_bounded_memory() -> None:
    from citeops.benchmarks.ingest import run_bench
    from citeops.benchmarks.settings import load_bench_settings

    result = run_bench(load_settings(), bench=load_bench_settings(ingest_lines=1_000_000))
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
