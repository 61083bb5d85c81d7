"""The quick recipe (the first champion `make run` trains) beats the majority baseline.

Slow: it trains MiniLM on every SciFact and Citation-Integrity training pair with the
demo's budget (``DemoBudget.first_train``, the `local` profile), about 5 minutes on 2 idle
CPU cores, then scores it on the test pairs the demo's gate uses (``DemoBudget``: the
whole test sets). Run it with ``pytest -m slow tests/model/test_quick_recipe.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_quick_recipe_beats_the_majority_baseline_on_both_test_sets(
    citeops_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.configs.settings import load_settings
    from citeops.flows.demo import DemoBudget
    from citeops.tasks.train.fit import train_model
    from citeops.tasks.validate.evaluate import evaluate_model

    monkeypatch.setenv("CITEOPS_PROFILE", "local")  # MiniLM, the embedded default
    budget = DemoBudget()  # the gate's test pairs: the ones the demo uses
    settings = load_settings(
        train=budget.first_train | {"include_feedback": False},
        evaluate={"max_examples": budget.evaluate_max_examples, "latency_samples": 0},
    )
    assert settings.model.base_model == "minilm"
    trained = train_model(settings, progress=False)
    result = evaluate_model(settings, trained.model_uri, log_to_mlflow=False)

    assert set(result.datasets) == {"scifact", "citint"}
    for name, dataset in result.datasets.items():
        f1, baseline = dataset.metrics["f1_macro"], dataset.baseline["f1_macro"]
        assert dataset.beats_baseline, f"{name}: macro F1 {f1:.3f} <= majority {baseline:.3f}"

    # issue 28: self-support pairs in training, so a claim given as its own evidence holds
    from citeops.tasks.inference.loading import load_verifier
    from citeops.tasks.validate.behaviour import run_behaviour_checks

    report = run_behaviour_checks(load_verifier(trained.model_uri, settings).predict_labels)
    assert not [f for f in report.failures if f.startswith("self-support")], report.failures
    assert report.share >= 0.9, report.failures
