"""DDP that trains: `citeops train` with two CPU processes (gloo) logs one MLflow run from
rank 0 and registers one model, and both processes take training steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.flows.cli import app
from citeops.flows.cli.common import run_cli
from citeops.tasks.tracking import mlflow_client
from citeops.tasks.train.ddp import rank_env, world_size


def test_world_size_follows_the_strategy_and_devices() -> None:
    assert world_size(load_settings()) == 1
    assert world_size(load_settings(train={"strategy": "ddp", "devices": 2})) == 2
    assert world_size(load_settings(train={"strategy": "auto", "devices": 2})) == 1
    assert rank_env(1, 2, 1234)["RANK"] == "1" and rank_env(1, 2, 1234)["WORLD_SIZE"] == "2"


@pytest.mark.integration
def test_two_process_ddp_training_logs_one_run_and_registers_one_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("CITEOPS_TRAIN__ACCELERATOR", "cpu")
    monkeypatch.setenv("CITEOPS_TRAIN__EPOCHS", "1")
    monkeypatch.setenv("CITEOPS_HOME", str(tmp_path / "one-process"))
    assert run_cli(app, ["train", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["metrics"]["f1_macro_by_dataset"]
    monkeypatch.setenv("CITEOPS_HOME", str(tmp_path / "two-processes"))
    monkeypatch.setenv("CITEOPS_TRAIN__DEVICES", "2")
    monkeypatch.setenv("CITEOPS_TRAIN__STRATEGY", "ddp")
    assert run_cli(app, ["train", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the same data, half the steps per process: the dev macro F1 within the noise of a
    # tiny random model's single epoch (MiniLM figures: BENCHMARKS.md ## train, DDP)
    assert abs(result["metrics"]["f1_macro_by_dataset"] - alone) <= 0.15
    settings = load_settings()
    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id])
    training = [r for r in runs if r.data.tags.get("citeops.kind") == "training"]
    assert len(training) == 1  # the worker logged nothing
    run = training[0]
    assert run.data.params["ddp_processes"] == "2"
    assert run.data.metrics["device_count"] == 2.0
    versions = client.search_model_versions(f"name='{settings.mlflow.registered_model}'")
    assert len(versions) == 1 and str(versions[0].version) == result["model_version"]
    # each rank took its shard: half the single-process batches (rounded up)
    steps = run.data.metrics["steps"]
    examples = int(run.data.params["train_examples"])
    batch = settings.train.batch_size
    batches = math.ceil(examples / batch)
    assert steps == pytest.approx(math.ceil(batches / 2), abs=1)
