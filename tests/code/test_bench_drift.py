"""The drift benchmark's workload (distinct generated queries) and calibration plumbing, on
small inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from citeops.benchmarks.drift import (
    EVIDENTLY_SCRIPT,
    BenchDriftError,
    _evidently,
    dataset_pools,
    distinct_queries,
    run_speed_bench,
    scenario_weights,
)
from citeops.benchmarks.drift_calibration import _calibration_data, calibration_round
from citeops.configs.settings import load_settings
from citeops.tasks.data.multivers import read_splits


def scifact_pool() -> tuple[list, list]:
    data = load_settings().data_dir
    pool = read_splits(data, ["scifact"], "dev") + read_splits(data, ["scifact"], "test")
    return pool, dataset_pools(data, pool)


def test_generated_queries_are_distinct_and_made_of_pool_material() -> None:
    pool, pools = scifact_pool()
    queries = distinct_queries(pools, [1.0], 5000, seed=3)
    assert len(queries) == len(set(queries)) == 5000
    assert len({c for c, _ in queries}) > 4500 and len({e for _, e in queries}) > 4500
    assert len({(e.claim, e.evidence) for e in pool}) < 700  # what drawing pairs repeats
    words = {w for e in pool for w in e.claim.split()}
    assert all(set(claim.split()) <= words for claim, _ in queries[:200])
    lengths = sorted(len(e.claim.split()) for e in pool)
    assert min(len(c.split()) for c, _ in queries) >= lengths[0]
    assert max(len(c.split()) for c, _ in queries) <= lengths[-1]
    again = distinct_queries(pools, [1.0], 50, seed=3)
    assert again == distinct_queries(pools, [1.0], 50, seed=3)  # seeded
    assert again != distinct_queries(pools, [1.0], 50, seed=4)


def test_unknown_scenario_and_exhausted_pool_are_clear_errors() -> None:
    pool, pools = scifact_pool()
    with pytest.raises(BenchDriftError, match="unknown scenario 'drifty'"):
        scenario_weights(pools, pool, pool, "drifty")
    (tiny,) = pools
    two = type(tiny)(tiny.name, [["a"], ["b"]], [["x."], ["y."]], [(0, 0), (1, 1)])
    with pytest.raises(BenchDriftError, match="fewer --rows"):
        distinct_queries([two], [1.0], 50, seed=0)


def test_bench_drift_reports_distinct_rows_beside_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    args = ["bench", "drift", "--rows", "300", "--reference-datasets", "scifact", "--json"]
    code = run_cli(app, args)
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["rows"] == 300 and result["distinct_rows"] == 300
    assert result["distinct_claims"] > 270 and result["distinct_evidences"] > 270
    assert result["target_distinct_rows"] == 270 and result["goals_met"]["distinct_rows"]
    assert result["distinct_pairs"] < 700 and result["target_seconds"] == 60
    # the timed run is a process of its own: its peak RSS is the drift run's, reported
    assert 0 < result["peak_rss_mb"] < result["target_peak_rss_mb"] == 2000
    assert result["seconds"] > 0 and set(result["checks"]) >= {"claim_text", "confidence"}
    assert result["evidently"].startswith("skipped") and "verdicts_agree" not in result


def test_evidently_comparison_is_skipped_cleanly_without_its_environment(tmp_path: Path) -> None:
    assert _evidently(None, tmp_path, None, [], None, print).startswith("skipped: no --evidently")
    assert _evidently("/nonexistent/python", tmp_path, None, [], None, print) == (
        "skipped: /nonexistent/python does not exist"
    )


def test_calibration_round_separates_null_from_other_source() -> None:
    settings = load_settings()
    pool, other, predict = _calibration_data(settings)
    shifted = calibration_round(settings, pool, other, predict, 1.0, 120, seed=7)
    assert shifted.drift is True and "claim_text" in shifted.drifted_checks
    assert shifted.current_rows == 120


EVIDENTLY_PYTHON = os.environ.get("CITEOPS_EVIDENTLY_PYTHON", "")


@pytest.mark.slow
@pytest.mark.skipif(
    not EVIDENTLY_PYTHON or not Path(EVIDENTLY_PYTHON).exists(),
    reason="no Evidently environment (set CITEOPS_EVIDENTLY_PYTHON)",
)
def test_evidently_comparison_runs_on_the_same_data() -> None:
    assert EVIDENTLY_SCRIPT.is_file() and shutil.which(EVIDENTLY_PYTHON)
    result = run_speed_bench(load_settings(), 400, EVIDENTLY_PYTHON, datasets=("scifact",))
    assert isinstance(result["evidently"], dict), result["evidently"]
    assert set(result["evidently"]["columns"]) == {
        "claim",
        "evidence",
        "claim_tokens",
        "evidence_tokens",
        "confidence",
        "prediction",
    }
    assert set(result["verdicts_agree"]) == {
        "claim_text",
        "evidence_text",
        "claim_length",
        "evidence_length",
        "confidence",
        "label_mix_vs_reference",
    }
