"""`citeops demo` (what `make run` runs) end to end on the tiny-model profile, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ARGS = ["--first-examples", "64", "--retrain-examples", "64", "--eval-examples", "32"]


def run_demo(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITEOPS_", "MLFLOW_"))}
    env.update(
        {
            "CITEOPS_PROFILE": "test",
            "CITEOPS_HOME": str(tmp_path / "home"),
            "CITEOPS_DATA_DIR": os.environ["CITEOPS_DATA_DIR"],
            "PREFECT_HOME": str(tmp_path / "prefect"),
        }
    )
    argv = [sys.executable, "-c", "from citeops.flows.cli import main; main()", "demo"]
    done = subprocess.run(
        [*argv, *ARGS, "--bake-seconds", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_demo_promotes_a_model_the_feedback_trigger_caused_and_runs_again(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    assert first["champion_before"] is None
    assert first["first_champion"]["outcome"] == "promoted"
    assert "feedback" in first["decision"]["causes"]
    assert first["traffic"]["failed"] == 0 and first["traffic"]["feedback"] >= 100
    record = first["retrain"]
    assert record["outcome"] in ("promoted", "gate_failed"), record["detail"]
    assert record["trigger"]["causes"] == first["decision"]["causes"]
    if record["outcome"] == "promoted":
        assert first["champion_after"] == record["version"]

    second = run_demo(tmp_path)  # finds the champion and the logged feedback
    assert second["champion_before"] == first["champion_after"]
    assert second["first_champion"] is None
    assert second["traffic"]["failed"] == 0
