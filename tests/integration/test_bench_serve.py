"""`citeops bench serve` end to end on the tiny model (both servers, swap test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from citeops.benchmarks.serve import (
    BenchOptions,
    LoadResult,
    batch_token_env,
    format_report,
    format_sweep,
    reuse_pairs,
    run_serve_bench,
)
from citeops.configs.settings import load_settings
from citeops.serving.batcher import batch_budget
from tests.harness import run_citeops
from tests.integration.serve_support import save_tiny_model


def test_load_summary_percentiles_and_throughput() -> None:
    result = LoadResult(clients=2, elapsed=2.0, latencies=[0.1] * 19 + [1.0], failed=1)
    summary = result.summary()
    assert summary["requests"] == 21 and summary["failed"] == 1
    assert summary["throughput"] == 10.0
    assert summary["p50_ms"] == 100.0 and summary["max_ms"] == 1000.0
    assert 100.0 < summary["p99_ms"] <= 1000.0


def run_on_tiny_model(tmp_path: Path, **options: Any) -> dict[str, Any]:
    """`bench serve` on a tiny model folder (fp32, test profile); returns the report."""
    settings = load_settings(profile="test", home=tmp_path / "home", serve={"precision": "fp32"})
    folder = save_tiny_model(tmp_path / "tiny")
    bench = BenchOptions(model_uri=str(folder), **options)
    return run_serve_bench(settings, bench, progress=lambda _: None)


@pytest.mark.slow
@pytest.mark.integration
def test_bench_serve_runs_both_servers_and_the_swap_test(tmp_path: Path) -> None:
    report = run_on_tiny_model(
        tmp_path, clients=(1, 4), seconds=2.0, swap_requests=300, swap_every=0.3
    )
    assert set(report["baseline"]) == set(report["serve"]) == {"1", "4"}
    assert report["serve"]["4"]["failed"] == 0 and report["baseline"]["4"]["failed"] == 0
    assert report["ratio"] > 0 and report["p95_ms"] > 0
    assert report["agreement"] >= 0.99 and report["agreement_pairs"] > 0  # same model, fp32
    assert report["swap"]["requests"] == 300 and report["swap"]["swaps"] >= 1
    assert report["swap_failed"] == 0
    assert "swap test" in format_report(report)
    assert report["runtime"]["runtime"] == load_settings().serve.runtime  # the main server's
    assert set(report["runtimes"]) == {"torch", "onnxruntime", "openvino"}
    for name, row in report["runtimes"].items():
        assert row["runtime"] == name  # the copy was exported, so every runtime serves it
        assert set(row["levels"]) == {"1", "4"} and row["levels"]["4"]["failed"] == 0
        assert row["agreement"] >= 0.99 and row["rss_mb"] > 0
    assert report["rss_mb_both_slots"] > 0
    assert "runtime onnxruntime" in format_report(report)


def test_the_reuse_workload_checks_each_evidence_against_n_claims_in_a_row() -> None:
    pairs = [("c1", "e1"), ("c2", "e2"), ("c3", "e1"), ("c4", "e3")]
    workload = reuse_pairs(pairs, 2)
    assert [e for _, e in workload] == ["e1", "e1", "e2", "e2", "e3", "e3"]
    assert [c for c, _ in workload] == ["c1", "c2", "c3", "c4", "c1", "c2"]
    # two users at a time: an evidence comes back with the next round, not in the same one
    spaced = reuse_pairs(pairs, 2, spacing=2)
    assert [e for _, e in spaced] == ["e1", "e2", "e1", "e2", "e3", "e3"]
    assert sorted(spaced) == sorted(workload)


def test_a_sweep_server_batches_under_the_swept_budget_whatever_runtime_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in batch_token_env({}, "auto", 2048).items():
        monkeypatch.setenv(name, value)
    serve = load_settings().serve
    assert serve.runtime == "auto"
    for runtime in ("torch", "onnxruntime", "openvino"):
        assert batch_budget(serve, runtime).max_batch_tokens == 2048


def test_sweep_lines_name_each_budget_per_runtime() -> None:
    row = {"throughput": 12.34, "p95_ms": 80.0}
    sweep = {"clients": 16, "runtimes": {"openvino": {"256": row, "1024": row}}}
    assert format_sweep(sweep) == [
        "batch token sweep at 16 clients:",
        "  openvino: 256: 12.3/s p95 80.0 ms  1024: 12.3/s p95 80.0 ms",
    ]
    assert format_sweep(None) == []


def test_bench_serve_refuses_a_token_budget_that_is_not_a_whole_number(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_citeops(["bench", "serve", "--batch-tokens", "256,big"], capsys)
    assert code == 2 and "--batch-tokens" in err


@pytest.mark.slow
@pytest.mark.integration
def test_bench_serve_sweeps_token_budgets_per_runtime(tmp_path: Path) -> None:
    report = run_on_tiny_model(
        tmp_path,
        clients=(2,),
        seconds=1.0,
        slice_seconds=0.5,
        swap_requests=0,
        runtimes=(),
        batch_tokens=(32, 512),
        sweep_runtimes=("torch", "openvino"),
        sweep_clients=4,
    )
    assert report["ratio"] > 0 and report["agreement"] >= 0.99  # the usual keys stay
    sweep = report["batch_token_sweep"]
    assert sweep["clients"] == 4 and set(sweep["runtimes"]) == {"torch", "openvino"}
    for runtime, rows in sweep["runtimes"].items():
        assert set(rows) == {"32", "512"}
        for tokens, row in rows.items():
            assert row["runtime"] == runtime and row["batching"]["max_batch_tokens"] == int(tokens)
            assert row["clients"] == 4 and row["failed"] == 0 and row["throughput"] > 0
            assert row["p95_ms"] > 0
    assert "batch token sweep at 4 clients:" in format_report(report)


@pytest.mark.integration
def test_bench_serve_runs_on_the_model_the_default_recipe_trains(tmp_path: Path) -> None:
    """The default (`local`) recipe's architecture, tiny-sized: the baseline loads it as a
    user's app would (plain transformers pipeline) and agrees with our server."""
    from citeops.tasks.classifier.base import load_base

    head = load_settings(profile="local").model.head
    settings = load_settings(
        profile="test", home=tmp_path / "home", model={"head": head}, serve={"precision": "fp32"}
    )
    model, tokenizer = load_base(settings.model, seed=0)
    folder = tmp_path / "default-recipe"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    bench = BenchOptions(
        model_uri=str(folder),
        clients=(2,),
        seconds=1.0,
        swap_requests=40,
        swap_every=0.3,
        warmup_requests=2,
        slice_seconds=1.0,
        runtimes=(),
        shadow_clients=2,
        shadow_share=1.0,
        evidence_reuse=4,
        reuse_clients=2,
    )
    report = run_serve_bench(settings, bench, progress=lambda _: None)
    shadow = report["shadow"]  # the same model mirrored as its own shadow challenger
    assert shadow["share"] == 1.0
    assert shadow["serve"]["failed"] == shadow["shadow"]["failed"] == 0
    assert shadow["copies"]["scored"] + shadow["copies"]["dropped"] > 0
    assert "shadow at 2 clients" in format_report(report)
    reuse = report["evidence_reuse"]  # each evidence checked against 4 claims in a row
    for name in ("baseline", "serve", "serve_cached"):
        assert reuse[name]["failed"] == 0 and reuse[name]["requests"] > 0
    if head == "siamese":  # the cache serves the later claims of each evidence
        assert reuse["cache"]["hits"] > reuse["cache"]["misses"] > 0
    assert reuse["ratio"] > 0 and reuse["cache_gain"] > 0
    assert "evidence reused x4" in format_report(report)
    assert report["baseline"]["2"]["failed"] == 0 and report["serve"]["2"]["failed"] == 0
    assert report["baseline"]["2"]["requests"] > 0
    assert report["agreement"] >= 0.99 and report["agreement_pairs"] > 0
    assert report["swap_failed"] == 0


@pytest.mark.integration
def test_the_default_bench_model_prepares_inputs_as_the_default_recipe_does(
    tmp_path: Path,
) -> None:
    """With no --model-uri both servers load MiniLM with an untrained head; its folder
    carries the input length and evidence selection a trained default model carries (before
    it had none, so both servers ran full 512-token pairs that no user's model runs)."""
    from citeops.benchmarks.serve import bench_model_folder
    from citeops.tasks.classifier.artifact import read_meta
    from citeops.tasks.classifier.preprocess import EvidenceSelection
    from citeops.tasks.inference.predictor import ClaimVerifier

    settings = load_settings(profile="local", home=tmp_path / "home")
    folder = bench_model_folder(settings, None)
    meta = read_meta(folder)
    assert meta["max_length"] == settings.train.max_length != 512
    selection = EvidenceSelection.from_meta(meta)
    assert selection.method == settings.model.evidence_selection.method != "off"
    verifier = ClaimVerifier.from_dir(folder)
    assert verifier.max_length == settings.train.max_length
    assert bench_model_folder(settings, None) == folder  # made once per home
