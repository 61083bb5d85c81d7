"""`citeops bench serve` end to end on the tiny model (both servers, swap test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from citeops.benchmarks.serve import BenchOptions, LoadResult, format_report, run_serve_bench
from citeops.configs.settings import load_settings
from tests.integration.serve_support import save_tiny_model


def test_load_summary_percentiles_and_throughput() -> None:
    result = LoadResult(clients=2, elapsed=2.0, latencies=[0.1] * 19 + [1.0], failed=1)
    summary = result.summary()
    assert summary["requests"] == 21 and summary["failed"] == 1
    assert summary["throughput"] == 10.0
    assert summary["p50_ms"] == 100.0 and summary["max_ms"] == 1000.0
    assert 100.0 < summary["p99_ms"] <= 1000.0


@pytest.mark.slow
@pytest.mark.integration
def test_bench_serve_runs_both_servers_and_the_swap_test(tmp_path: Path) -> None:
    settings = load_settings(profile="test", home=tmp_path / "home", serve={"precision": "fp32"})
    folder = save_tiny_model(tmp_path / "tiny")
    options = BenchOptions(
        model_uri=str(folder), clients=(1, 4), seconds=2.0, swap_requests=300, swap_every=0.3
    )
    report = run_serve_bench(settings, options, progress=lambda _: None)
    assert set(report["baseline"]) == set(report["serve"]) == {"1", "4"}
    assert report["serve"]["4"]["failed"] == 0 and report["baseline"]["4"]["failed"] == 0
    assert report["ratio"] > 0 and report["p95_ms"] > 0
    assert report["agreement"] >= 0.99 and report["agreement_pairs"] > 0  # same model, fp32
    assert report["swap"]["requests"] == 300 and report["swap"]["swaps"] >= 1
    assert report["swap_failed"] == 0
    assert "swap test" in format_report(report)
    assert report["runtime"]["runtime"] == settings.serve.runtime  # the main server's
    assert set(report["runtimes"]) == {"torch", "onnxruntime", "openvino"}
    for name, row in report["runtimes"].items():
        assert row["runtime"] == name  # the copy was exported, so every runtime serves it
        assert set(row["levels"]) == {"1", "4"} and row["levels"]["4"]["failed"] == 0
        assert row["agreement"] >= 0.99 and row["rss_mb"] > 0
    assert report["rss_mb_both_slots"] > 0
    assert "runtime onnxruntime" in format_report(report)
