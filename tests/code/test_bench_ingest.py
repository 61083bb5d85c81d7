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


def _bench_databases(admin_url: str) -> set[str]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'citeops_bench_%'")
        return {name for (name,) in rows}


def test_bench_ingest_runs_both_stores_on_the_same_lines(
    capsys: pytest.CaptureFixture[str], postgres_admin_url: str
) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    before = _bench_databases(postgres_admin_url)
    args = ["bench", "ingest", "--lines", "3000", "--stores", "sqlite,postgresql", "--json"]
    code = run_cli(
        app,
        [
            *args,
            "--store-url",
            postgres_admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        ],
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    sqlite, postgresql = result["stores"]
    assert (sqlite["store"], postgresql["store"]) == ("sqlite", "postgresql")
    # each run checked its report against the generator's tally; both stores agree
    assert sqlite["report"] == postgresql["report"] == result["report"]
    assert postgresql["report"]["lines"] == result["baseline"]["lines"] == 3000
    assert postgresql["report"]["duplicates"] > 0 and postgresql["report"]["conflicts"] > 0
    assert postgresql["peak_rss_mb"] > 0 and postgresql["store_mb"] > 0
    assert set(postgresql["goals_met"]) == {"seconds", "peak_rss_mb"}
    assert _bench_databases(postgres_admin_url) <= before  # its database was dropped


def test_bench_ingest_names_an_unknown_store(capsys: pytest.CaptureFixture[str]) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    code = run_cli(app, ["bench", "ingest", "--lines", "10", "--stores", "sqlite,oracle"])
    assert code != 0
    assert "oracle" in capsys.readouterr().err


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
def test_million_lines_are_accounted_in_bounded_memory(postgres_admin_url: str) -> None:
    from citeops.benchmarks.ingest import run_bench
    from citeops.benchmarks.settings import load_bench_settings

    result = run_bench(
        load_settings(),
        bench=load_bench_settings(ingest_lines=1_000_000),
        stores=("sqlite", postgres_admin_url.replace("postgresql://", "postgresql+psycopg://")),
    )
    for store in result["stores"]:
        report = store["report"]
        assert store["lines"] == report["lines"] == 1_000_000
        assert (
            report["accepted"] + report["duplicates"] + report["conflicts"] + report["quarantined"]
            == 1_000_000
        )
        # streamed in chunks: neither process holds the 700 MB input, on either store
        # (measured at 100 k lines: about 250 MB for the store, 500 MB for the reader)
        assert store["peak_rss_mb"] <= result["target_peak_rss_mb"] == 1000
