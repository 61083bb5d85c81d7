"""`citeops evaluate` with the tiny model registered in the test's MLflow store."""

from __future__ import annotations

import json

import pytest

from citeops.configs.settings import load_settings


def test_evaluate_reports_metrics_baseline_latency_and_logs_a_run(registered_tiny_model) -> None:
    import mlflow
    from citeops.tasks.validate.evaluate import evaluate_model

    model_uri, version = registered_tiny_model
    settings = load_settings()
    result = evaluate_model(settings, model_uri)
    assert result.model_version == version
    assert set(result.datasets) == {"scifact", "citint"}
    for ds in result.datasets.values():
        assert ds.examples == settings.evaluate.max_examples
        assert {"f1_macro", "f1_SUPPORT", "f1_NEI", "f1_REFUTE", "auroc_macro"} <= set(ds.metrics)
        assert ds.latency_ms["samples"] == settings.evaluate.latency_samples
        assert 0 < ds.latency_ms["p50"] <= ds.latency_ms["p95"]
        assert ds.baseline["majority_label"] == "SUPPORT"  # the training majority of both
        assert ds.baseline["f1_NEI"] == 0.0 and ds.baseline["f1_REFUTE"] == 0.0
    mean = (
        result.datasets["scifact"].metrics["f1_macro"]
        + result.datasets["citint"].metrics["f1_macro"]
    ) / 2
    assert result.mean_f1_macro == pytest.approx(mean)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["model_uri"] == model_uri
    assert run.data.metrics["scifact_f1_macro"] == pytest.approx(
        result.datasets["scifact"].metrics["f1_macro"]
    )
    assert "citint_latency_p95_ms" in run.data.metrics


def test_cli_evaluate_json_and_unknown_alias(registered_tiny_model, capsys) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    assert (
        run_cli(
            app,
            [
                "evaluate",
                "--model-uri",
                "models:/claim-verifier@latest-trained",
                "--json",
                "--max-examples",
                "8",
            ],
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["model_version"] == registered_tiny_model[1]
    assert payload["datasets"]["citint"]["examples"] == 8
    assert run_cli(app, ["evaluate", "--model-uri", "models:/claim-verifier@missing"]) == 2
    assert "cannot be resolved" in capsys.readouterr().err


def test_evaluation_reports_intervals_confusion_origin_and_logs_table_and_plot(
    registered_tiny_model,
) -> None:
    import mlflow
    from citeops.tasks.validate.evaluate import CONFUSION_ARTIFACT, TABLE_ARTIFACT, evaluate_model

    model_uri, _ = registered_tiny_model
    settings = load_settings()
    result = evaluate_model(settings, model_uri)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    registered = client.get_model_version(settings.mlflow.registered_model, result.model_version)
    assert result.training_run_id == registered.run_id != result.run_id
    for ds in result.datasets.values():
        low, high = ds.f1_macro_ci95
        assert 0.0 <= low <= ds.metrics["f1_macro"] + 1e-9 <= high + 2e-9
        assert sum(map(sum, ds.confusion)) == ds.examples
        assert ds.labels == ("SUPPORT", "NEI", "REFUTE")
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {TABLE_ARTIFACT, CONFUSION_ARTIFACT, "evaluation.json"} <= artifacts
    payload = result.to_dict()
    scifact = payload["datasets"]["scifact"]
    assert scifact["metrics"]["f1_macro"] == round(scifact["metrics"]["f1_macro"], 4)
    assert payload["training_run_id"] == registered.run_id
    report = result.text_report()
    for column in ("majority baseline", "F1 SUPPORT", "F1 NEI", "F1 REFUTE", "95% CI"):
        assert column in report
    assert registered.run_id in report and "confusion matrix, citint" in report
    # the untrained tiny model predicts one class: at best level with the majority baseline
    assert "BELOW BASELINE" in report and not result.datasets["citint"].beats_baseline
