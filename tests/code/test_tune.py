"""`citeops tune`: Optuna trials of the tiny model on dev, each an MLflow run; the best
recipe written into a settings profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from citeops.configs.settings import load_settings
from tests.harness import run_citeops

# two quick dimensions: every trial differs in what it trains with
SPACE = json.dumps(
    {
        "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        "max_length": {"choices": [64, 96]},
    }
)


@pytest.fixture
def tune_env(citeops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITEOPS_TUNE__SPACE", SPACE)
    monkeypatch.setenv("CITEOPS_TUNE__MAX_EXAMPLES", "32")
    monkeypatch.setenv("CITEOPS_TUNE__MAX_EVAL_EXAMPLES", "16")
    return citeops_env


def test_tune_runs_trials_as_mlflow_runs_and_continues_the_study(tune_env: Path, capsys) -> None:
    import mlflow

    status, out, err = run_citeops(
        ["tune", "--trials", "2", "--budget-minutes", "10", "--json"], capsys
    )
    assert status == 0, err
    result = json.loads(out)
    assert [t["number"] for t in result["trials"]] == [0, 1]
    assert all(t["state"] == "complete" for t in result["trials"])
    values = [t["value"] for t in result["trials"]]
    assert result["best_value"] == max(values)
    best = result["trials"][values.index(max(values))]
    assert result["best_params"] == best["params"]
    assert result["recipe"] == {"datasets": ["scifact", "citint"], **best["params"]}
    assert {t["params"]["learning_rate"] for t in result["trials"]} != {None}
    assert all(set(t["dev"]) == {"scifact", "citint"} for t in result["trials"])
    # a new study starts from the recipe in use: train.learning_rate of the test profile
    # (its max_length, 128, is not among the choices, so that one is drawn)
    assert [t["baseline"] for t in result["trials"]] == [True, False]
    assert result["trials"][0]["params"]["learning_rate"] == pytest.approx(
        load_settings().train.learning_rate
    )
    assert result["trials"][0]["params"]["max_length"] in (64, 96)
    assert "trial 0 (the recipe in use): dev F1" in err  # progress on stderr

    settings = load_settings()
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name("citeops-tune")
    runs = client.search_runs([experiment.experiment_id])
    trial_runs = {
        r.data.tags.get("citeops.tune.trial"): r
        for r in runs
        if r.info.run_name.startswith("trial-")
    }
    assert set(trial_runs) == {"0", "1"}
    for number, run in trial_runs.items():
        trial = result["trials"][int(number)]
        assert run.info.run_id == trial["run_id"]
        assert float(run.data.params["learning_rate"]) == pytest.approx(
            trial["params"]["learning_rate"]
        )
        assert run.data.metrics["best_val_f1_macro_by_dataset"] == pytest.approx(trial["value"])
        assert not run.outputs or not run.outputs.model_outputs  # trials log no model
    summary = client.get_run(result["summary_run_id"])
    assert summary.data.metrics["best_dev_f1_macro_by_dataset"] == pytest.approx(
        result["best_value"]
    )
    # nothing was registered: a search does not make versions
    assert client.search_registered_models() == []

    status, out, err = run_citeops(
        ["tune", "--trials", "1", "--budget-minutes", "10", "--json"], capsys
    )
    assert status == 0, err
    again = json.loads(out)
    assert [t["number"] for t in again["trials"]] == [2]  # the same study, continued
    first_values = {t["params"]["learning_rate"] for t in result["trials"]}
    assert again["trials"][0]["params"]["learning_rate"] not in first_values  # a new draw
    assert again["best_value"] >= result["best_value"]


def test_workers_with_one_storage_share_the_study(
    tune_env: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two homes (two machines' MLflow stores) and one journal file: the second call
    continues the first's study, and only the study's first trial is the baseline."""
    storage = f"journal://{tmp_path / 'shared' / 'tune.log'}"
    numbers: list[list[int]] = []
    baselines: list[bool] = []
    for worker in ("a", "b"):
        monkeypatch.setenv("CITEOPS_HOME", str(tmp_path / worker))
        argv = ["tune", "--trials", "1", "--budget-minutes", "10", "--json"]
        argv += ["--storage", storage, "--sampler-seed", str(ord(worker))]
        status, out, err = run_citeops(argv, capsys)
        assert status == 0, err
        result = json.loads(out)
        numbers.append([t["number"] for t in result["trials"]])
        baselines += [t["baseline"] for t in result["trials"]]
    assert numbers == [[0], [1]]
    assert baselines == [True, False]
    assert (tmp_path / "shared" / "tune.log").stat().st_size > 0
    assert not (tmp_path / "a" / "tune.db").exists()


def test_the_pruner_stops_a_fit_below_the_median_but_never_one_that_ran_its_course() -> None:
    """The callback against a real Optuna study: two complete trials scored 0.6 and 0.7
    after epoch 0; a third at 0.1 is stopped there, unless epoch 0 was its last."""
    from types import SimpleNamespace

    import optuna

    from citeops.tasks.train.module import PruneOnDev

    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
    )
    for score in (0.6, 0.7):
        trial = study.ask()
        trial.report(score, step=0)
        study.tell(trial, score)

    def epoch_end(score: float, max_epochs: int) -> tuple[PruneOnDev, SimpleNamespace]:
        callback = PruneOnDev(study.ask(), monitor="dev")
        trainer = SimpleNamespace(
            callback_metrics={"dev": score},
            sanity_checking=False,
            current_epoch=0,
            max_epochs=max_epochs,
            should_stop=False,
        )
        callback.on_validation_end(trainer, None)
        return callback, trainer

    low, trainer = epoch_end(0.1, max_epochs=3)
    assert low.pruned_at == 0 and trainer.should_stop
    high, trainer = epoch_end(0.9, max_epochs=3)
    assert high.pruned_at is None and not trainer.should_stop
    last, trainer = epoch_end(0.1, max_epochs=1)
    assert last.pruned_at is None and not trainer.should_stop
    assert study.trials[low.trial.number].intermediate_values == {0: 0.1}


def test_write_profile_replaces_the_train_section(tune_env: Path, tmp_path: Path, capsys) -> None:
    profile = tmp_path / "local.yaml"
    profile.write_text(
        "profile: local\nmodel:\n  base_model: minilm\ntrain:\n  datasets: [scifact]\n"
        "  epochs: 9\n# the gate\ngate:\n  class_f1_floor: 0.0\n"
    )
    argv = [
        "tune",
        "--trials",
        "1",
        "--budget-minutes",
        "10",
        "--write-profile",
        str(profile),
        "--json",
    ]
    status, out, err = run_citeops(argv, capsys)
    assert status == 0, err
    result = json.loads(out)
    written = yaml.safe_load(profile.read_text())
    assert written["train"] == result["recipe"]
    assert "epochs" not in written["train"]
    assert written["gate"] == {"class_f1_floor": 0.0}
    assert written["model"] == {"base_model": "minilm"}
    assert "# the gate" in profile.read_text()
    first = profile.read_text()
    # a second write replaces the tuned block instead of adding one
    status, out, err = run_citeops(argv, capsys)
    assert status == 0, err
    assert profile.read_text().count("train:") == 1
    assert yaml.safe_load(profile.read_text())["train"] == json.loads(out)["recipe"]
    assert first.count("end of the tuned train recipe") == 1


def test_tune_usage_errors_are_one_line(
    tune_env: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITEOPS_TUNE__SPACE", json.dumps({"not_a_setting": {"choices": [1]}}))
    status, _, err = run_citeops(["tune", "--trials", "1"], capsys)
    assert status == 2
    assert err.strip().startswith("error: setting tune.space") and "not_a_setting" in err
    assert "Traceback" not in err

    monkeypatch.setenv("CITEOPS_TUNE__SPACE", SPACE)
    monkeypatch.setenv("CITEOPS_TUNE__MIN_TRIAL_MINUTES", "5")
    status, _, err = run_citeops(["tune", "--budget-minutes", "1"], capsys)
    assert status == 2
    assert "no trial ran" in err and "Traceback" not in err

    status, _, err = run_citeops(["tune", "--storage", "nosuchdb://x"], capsys)
    assert status == 2
    assert "cannot open tune.storage 'nosuchdb://x'" in err and "Traceback" not in err

    status, _, err = run_citeops(["tune", "--trials", "0"], capsys)
    assert status == 2  # Typer's usage error
