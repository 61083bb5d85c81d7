"""Training with the tiny model into the test's own MLflow store, and loading it back."""

from __future__ import annotations

import json

import pytest

from citeops.configs.settings import load_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir):
    """One short training run (tiny model, 2 epochs) shared by the tests of this module."""
    home = tmp_path_factory.mktemp("train-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CITEOPS_PROFILE", "test")
        env.setenv("CITEOPS_HOME", str(home))
        env.setenv("CITEOPS_DATA_DIR", str(data_dir))
        from citeops.flows.tracking import use_mlflow
        from citeops.tasks.train.fit import train_model

        train = {"epochs": 2, "early_stopping_patience": 1, "tune_class_offsets": True}
        settings = use_mlflow(load_settings(train=train))
        result = train_model(settings, progress=False)
    return settings, result


def test_training_logs_a_run_with_params_metrics_and_inputs(trained) -> None:
    import mlflow

    settings, result = trained
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["base_model"] == "tiny"
    assert run.data.params["max_length"] == str(settings.train.max_length)
    assert int(run.data.params["train_examples"]) == settings.train.max_examples
    history = client.get_metric_history(result.run_id, "val_f1_macro_by_dataset")
    assert [m.step for m in history] == [0, 1]  # one point per epoch, the selection metric
    assert result.metrics["f1_macro_by_dataset"] == pytest.approx(
        (result.metrics["f1_macro_scifact"] + result.metrics["f1_macro_citint"]) / 2
    )
    assert len(client.get_metric_history(result.run_id, "train_loss")) == 2
    names = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert names == {"scifact-train", "citint-train", "scifact-dev", "citint-dev"}
    assert all(len(d.dataset.digest) == 16 for d in run.inputs.dataset_inputs)
    assert 0.0 <= result.metrics["f1_macro"] <= 1.0
    assert set(result.metrics) >= {"accuracy", "f1_micro", "f1_NEI", "auroc_weighted"}
    assert run.info.artifact_uri.startswith(settings.mlflow.artifact_location)


def test_trained_version_loads_by_version_and_alias(trained) -> None:
    import mlflow
    from citeops.tasks.inference.loading import load_verifier
    from citeops.tasks.registry.register import get_version_by_alias

    settings, result = trained
    assert result.model_uri == f"models:/claim-verifier/{result.model_version}"
    assert get_version_by_alias(settings, "latest-trained") == result.model_version
    by_version = load_verifier(result.model_uri, settings)
    by_alias = load_verifier("models:/claim-verifier@latest-trained", settings)
    assert by_alias.model_version == result.model_version
    claims, evidences = ["Aspirin lowers fever."], ["Aspirin reduced fever in a trial."]
    probs = by_version.predict_proba(claims, evidences)
    assert probs.shape == (1, 3)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert by_alias.predict_proba(claims, evidences) == pytest.approx(probs, abs=1e-6)
    assert by_version.meta["max_length"] == settings.train.max_length
    assert by_version.meta["labels"] == ["SUPPORT", "NEI", "REFUTE"]
    # the dev-tuned class offsets (in the weights already) are recorded and logged
    offsets = by_version.meta["class_offsets"]
    assert set(offsets) == {"SUPPORT", "NEI", "REFUTE"} and offsets["SUPPORT"] == 0.0
    params = mlflow.MlflowClient(settings.mlflow.tracking_uri).get_run(result.run_id).data.params
    assert {k: float(params[f"class_offset_{k}"]) for k in offsets} == offsets


def test_trained_model_loads_as_pyfunc(trained) -> None:
    import pandas as pd

    import mlflow
    from citeops.flows.tracking import use_mlflow

    settings, result = trained
    use_mlflow(settings)
    model = mlflow.pyfunc.load_model(result.model_uri)
    out = model.predict(pd.DataFrame({"claim": ["a", "b"], "evidence": ["c", "d"]}))
    assert list(out.columns) == ["label", "p_SUPPORT", "p_NEI", "p_REFUTE"]
    assert set(out["label"]) <= {"SUPPORT", "NEI", "REFUTE"}
    assert out[["p_SUPPORT", "p_NEI", "p_REFUTE"]].sum(axis=1).tolist() == pytest.approx([1, 1])


def test_registered_tiny_model_fixture(registered_tiny_model) -> None:
    from citeops.tasks.inference.loading import load_verifier
    from citeops.tasks.registry.register import get_version_by_alias, set_alias

    model_uri, version = registered_tiny_model
    settings = load_settings()
    verifier = load_verifier(model_uri, settings)
    assert verifier.model_version == version
    assert verifier.predict_labels(["x"], ["y"])[0] in {"SUPPORT", "NEI", "REFUTE"}
    set_alias(settings, version, "champion")
    assert get_version_by_alias(settings, "champion") == version
    assert get_version_by_alias(settings, "no-such-alias") is None


def test_set_alias_on_a_missing_version_is_a_clear_error(registered_tiny_model) -> None:
    from citeops.tasks.registry.register import RegistryError, set_alias

    with pytest.raises(RegistryError, match="cannot set alias"):
        set_alias(load_settings(), "99", "champion")


def test_cli_train_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    code = run_cli(app, ["train", "--json", "--max-steps", "2", "--max-examples", "24"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"run_id", "model_uri", "model_version", "metrics"}
    assert payload["model_uri"] == "models:/claim-verifier/1"
    assert "f1_macro" in payload["metrics"]


def test_cli_train_rejects_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    assert run_cli(app, ["train", "--max-length", "3"]) == 2
    assert "train.max_length" in capsys.readouterr().err
