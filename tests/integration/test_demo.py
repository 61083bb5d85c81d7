"""`citeops demo` (what `make run` runs) end to end on the tiny-model profile, twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ARGS = ["--first-examples", "64", "--retrain-examples", "64", "--eval-examples", "32"]
# what the terminal showed before the run log took it: Prefect's task states and server
# notices, Hugging Face load reports and tokenizer warnings, Python warnings (MLflow's),
# progress bars
NOISE = (
    "Finished in state",
    "temporary server",
    "LOAD REPORT",
    "Token indices",
    "Warning",
    "it/s]",
)


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITEOPS_", "MLFLOW_"))}
    env.update(
        {
            "CITEOPS_PROFILE": "test",
            "CITEOPS_HOME": str(tmp_path / "home"),
            "CITEOPS_DATA_DIR": os.environ["CITEOPS_DATA_DIR"],
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_LOGGING_LEVEL": "INFO",  # Prefect's default, as `make run` has it
        }
    )
    return env


def run_demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """One demo run on ``tmp_path``'s home; it succeeded and its terminal held our lines
    only (timestamped progress, after the two opening lines naming the home and the log)."""
    argv = [sys.executable, "-c", "from citeops.flows.cli import main; main()", "demo"]
    done = subprocess.run(
        [*argv, *ARGS, "--bake-seconds", "2", *options],
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in NOISE:
        assert noise not in done.stderr, done.stderr
    opening, *progress = done.stderr.splitlines()
    assert opening.startswith("citeops demo: home ")
    assert progress[0].startswith("full log: ")
    assert all(line[:2].isdigit() and line[2] == ":" for line in progress[1:]), done.stderr
    return done


def test_demo_promotes_a_model_the_feedback_trigger_caused_and_runs_again(tmp_path: Path) -> None:
    first = json.loads(run_demo(tmp_path, "--json").stdout)
    assert first["champion_before"] is None
    assert first["first_champion"]["outcome"] == "promoted"
    # the trigger fired on the users' feedback or on the drift they caused (the tiny random
    # model's probabilities make the feedback-quality flags, and so the trusted count, noise)
    assert first["decision"]["retrain"] and set(first["decision"]["causes"]) <= {
        "feedback",
        "drift",
    }
    assert first["traffic"]["failed"] == 0 and first["traffic"]["feedback"] >= 100
    record = first["retrain"]
    assert record["outcome"] in ("promoted", "aborted", "gate_failed"), record["detail"]
    if record["outcome"] != "gate_failed":  # the gated challenger had its A/B phase
        online = record["gate"]["online"]
        report = online["report"]
        assert online["experiment"]["mode"] == "split"  # promote.online ab: a split of users
        assert report["verdict"] == {"promoted": "promote", "aborted": "abort"}[record["outcome"]]
        judged = sum(arm["feedback"] for arm in report["arms"].values())
        assert judged >= 40 and all(arm["requests"] > 0 for arm in report["arms"].values())
    if record["outcome"] == "promoted":
        assert first["champion_after"] == record["version"]
    log = Path(first["where"]["log"]).read_text()  # the full log has what the terminal had not
    assert "Finished in state Completed()" in log and "UserWarning" in log

    second = run_demo(tmp_path).stdout  # finds the champion and the logged feedback
    assert f"champion     {first['champion_after']}" in second
    assert "(first)" not in second
    assert ", 0 failed" in second
    where = {line[:12].strip(): line[13:] for line in second.splitlines() if line[:1].isalpha()}
    assert second.splitlines()[-1] == f"full log     {where['full log']}"
    assert Path(where["full log"]).is_file() and where["full log"] != first["where"]["log"]
    assert Path(where["full log"]).parent == tmp_path / "home" / "run-logs"
    # the next steps run as printed (the summary names citeops by its path when the shell
    # would not find it, as after `make run`)
    env = demo_env(tmp_path)
    assert shutil.which(where["mlflow"].split()[0], path=env["PATH"])
    history = subprocess.run(
        where["history"], shell=True, env=env, capture_output=True, text=True, timeout=120
    )
    assert history.returncode == 0 and "promote" in history.stdout, history.stderr
