"""The drift benchmark and calibration plumbing, on small inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from citeops.benchmarks.drift import EVIDENTLY_SCRIPT, _evidently, run_speed_bench
from citeops.benchmarks.drift_calibration import _calibration_data, calibration_round
from citeops.configs.settings import load_settings


def test_evidently_comparison_is_skipped_cleanly_without_its_environment(tmp_path: Path) -> None:
    assert _evidently(None, tmp_path, None, [], None, print).startswith("skipped: no --evidently")
    assert _evidently("/nonexistent/python", tmp_path, None, [], None, print) == (
        "skipped: /nonexistent/python does not exist"
    )


@pytest.mark.slow
def test_speed_bench_without_evidently() -> None:
    result = run_speed_bench(load_settings(), 300, None, datasets=("scifact",))
    assert result["rows"] == 300 and result["seconds"] > 0
    assert set(result["checks"]) >= {"claim_text", "confidence"}
    assert result["evidently"].startswith("skipped") and "verdicts_agree" not in result


def test_calibration_round_separates_null_from_other_source() -> None:
    settings = load_settings()
    pool, other, predict = _calibration_data(settings)
    shifted = calibration_round(settings, pool, other, predict, 1.0, 120, seed=7)
    assert shifted.drift is True and "claim_text" in shifted.drifted_checks
    assert shifted.current_rows == 120


EVIDENTLY_PYTHON = Path("/work/notes/evidently-venv/bin/python")


@pytest.mark.slow
@pytest.mark.skipif(not EVIDENTLY_PYTHON.exists(), reason="no Evidently environment here")
def test_evidently_comparison_runs_on_the_same_data() -> None:
    assert EVIDENTLY_SCRIPT.is_file() and shutil.which(str(EVIDENTLY_PYTHON))
    result = run_speed_bench(load_settings(), 400, str(EVIDENTLY_PYTHON), datasets=("scifact",))
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
