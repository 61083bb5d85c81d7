"""MLflow reads well for the engineer reviewing it: runs named by what they were, training
run, validation run, promotion record and version linked by tags, and a version
description with the trigger, the data digests, the gate's verdict and table, and the
release (real sqlite MLflow store and the test's store database)."""

from __future__ import annotations

import random

from citeops.configs.settings import load_settings


def gate_inputs(candidate_uri: str, champion_uri: str | None):  # noqa: ANN201
    """A real Validation on 60 examples where the candidate is right every time."""
    from citeops.tasks.validate.behaviour import BehaviourReport
    from citeops.tasks.validate.compare import Validation
    from citeops.tasks.validate.gate import BenchmarkPredictions, LatencyComparison

    rng = random.Random(0)
    gold = [rng.randrange(3) for _ in range(60)]
    champion = [rng.randrange(3) for _ in gold]
    bench = BenchmarkPredictions("scifact", gold, list(gold), champion, majority_label=1)
    return Validation(
        candidate_uri,
        champion_uri,
        [bench],
        LatencyComparison(10.0, 10.0),
        BehaviourReport(passed=45, total=45),
        examples={"scifact": 60},
    )


def test_retrain_runs_and_version_are_named_linked_and_described(registered_tiny_model) -> None:
    from citeops.tasks.inference.aliases import CHAMPION
    from citeops.tasks.registry.describe import (
        GATE_TAG,
        PROMOTION_TAG,
        TRAINING_RUN_TAG,
        VALIDATION_RUN_TAG,
        VERSION_TAG,
    )
    from citeops.tasks.registry.register import register_version, set_alias
    from citeops.tasks.release.lifecycle import PromotionRun
    from citeops.tasks.tracking import mlflow_client
    from citeops.tasks.train.fit import Candidate
    from citeops.tasks.train.training_set import build_training_set
    from citeops.tasks.validate.compare import judge

    settings = load_settings(train={"max_examples": 40, "include_feedback": False})
    client = mlflow_client(settings)
    champion_uri, champion_version = registered_tiny_model
    set_alias(settings, champion_version, CHAMPION)
    first = client.get_model_version(settings.mlflow.registered_model, champion_version)
    logged = client.get_run(first.run_id).outputs.model_outputs[0].model_id
    trigger = {"causes": ["feedback", "drift"], "reasons": ["120 trusted feedback", "drift"]}
    run = PromotionRun.open(settings, "retrain", trigger)
    challenger = register_version(settings, f"models:/{logged}", first.run_id)
    candidate = Candidate(first.run_id, f"models:/{logged}", {"f1_macro": 0.5}, steps=3)
    data = build_training_set(settings)
    run.trained(data, candidate, challenger)
    validation = gate_inputs(challenger.model_uri, champion_uri)
    decision = judge(settings, validation)
    run.gated(decision, validation)
    run.finish("promoted", f"version {challenger.version} is live")

    version = challenger.version
    train_run = client.get_run(candidate.run_id)
    assert train_run.info.run_name == f"retrain v{version} · feedback+drift"
    validate_run = client.get_run(validation.run_id)
    assert validate_run.info.run_name == f"validate v{version} vs v{champion_version}"
    found = client.get_model_version(settings.mlflow.registered_model, version)
    assert found.tags[TRAINING_RUN_TAG] == candidate.run_id
    assert found.tags[VALIDATION_RUN_TAG] == validation.run_id
    assert found.tags[PROMOTION_TAG] == str(run.record.id)
    assert found.tags[GATE_TAG] == ("passed" if decision.passed else "refused")
    assert train_run.data.tags[VERSION_TAG] == version
    assert train_run.data.tags[PROMOTION_TAG] == str(run.record.id)
    assert train_run.data.tags[VALIDATION_RUN_TAG] == validation.run_id
    validate_tags = client.get_run(validation.run_id).data.tags
    assert validate_tags[TRAINING_RUN_TAG] == candidate.run_id
    assert validate_tags[PROMOTION_TAG] == str(run.record.id)
    assert run.record.mlflow_run_ids["validate"] == validation.run_id
    text = found.description
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Trained",
        "## Gate",
        "## Release",
    ]
    assert "Trigger: feedback, drift (120 trusted feedback; drift)" in text
    assert all(digest[:16] in text for digest in data.digests.values()) and data.digests
    assert decision.markdown_table() in text
    assert "**promoted** by retrain" in text and f"Promotion record #{run.record.id}" in text


def test_a_later_section_replaces_only_itself(registered_tiny_model) -> None:
    from citeops.tasks.registry.describe import set_section, split_sections

    settings = load_settings()
    _, version = registered_tiny_model
    set_section(settings, version, "Trained", "first")
    set_section(settings, version, "Gate", "refused")
    text = set_section(settings, version, "Trained", "second")
    assert split_sections(text) == {"Trained": "second", "Gate": "refused"}


def test_run_labels_name_versions_and_aliases() -> None:
    from citeops.tasks.registry.describe import version_label

    assert version_label("models:/claim-verifier/3") == "v3"
    assert version_label("models:/claim-verifier@champion") == "@champion"
    assert version_label(None) == "none"
    assert version_label("/tmp/folder") == "/tmp/folder"
