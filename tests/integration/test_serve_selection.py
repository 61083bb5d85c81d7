"""A model's evidence selection reaches the serving endpoint: /predict answers with the
probabilities that evaluation's path (load_verifier + predict_proba) gives for the same
pair, for evidence sent as one text and as a list of sentences."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from citeops.configs.settings import load_settings
from citeops.serving.app import create_app
from tests.integration.serve_support import running_server, save_tiny_model

pytestmark = pytest.mark.integration

CLAIM = "Aspirin lowers the risk of colorectal cancer."
SENTENCES = [
    *(f"Cohort {i} enrolled volunteers from regional hospitals in the period." for i in range(8)),
    "Daily aspirin lowered the risk of colorectal cancer by a third.",
]


def sharpened(folder: Path) -> Path:
    """The random tiny model with its head scaled up, so that inputs move its answers."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)
    model.save_pretrained(folder)
    return folder


def test_predict_applies_the_models_selection_like_evaluation(tmp_path: Path) -> None:
    from citeops.tasks.classifier.artifact import write_meta
    from citeops.tasks.classifier.preprocess import META_KEY, EvidenceSelection
    from citeops.tasks.data.multivers import LABELS
    from citeops.tasks.inference.loading import load_verifier

    folder = sharpened(save_tiny_model(tmp_path / "model"))
    selection = EvidenceSelection("bm25", 24, 0)
    write_meta(folder, {"labels": list(LABELS), "max_length": 128, META_KEY: selection.to_meta()})
    settings = load_settings(profile="test", home=tmp_path / "home", serve={"precision": "fp32"})
    evaluated = load_verifier(str(folder), settings)
    assert evaluated.selection == selection
    evidence = " ".join(SENTENCES)
    expected = evaluated.predict_proba([CLAIM], [evidence])[0]
    whole = load_verifier(str(folder), settings)
    whole.selector.selection = EvidenceSelection("off")
    unselected = whole.predict_proba([CLAIM], [evidence])[0]
    assert np.abs(unselected - expected).max() > 1e-3  # selection changes the answer

    with running_server(create_app(settings, str(folder))) as base:
        for sent in (evidence, SENTENCES):
            response = httpx.post(f"{base}/predict", json={"claim": CLAIM, "evidence": sent})
            assert response.status_code == 200, response.text
            probabilities = response.json()["probabilities"]
            served = np.array([probabilities[label] for label in LABELS])
            np.testing.assert_allclose(served, expected, atol=1e-4)
        batch = httpx.post(
            f"{base}/predict/batch",
            json={"pairs": [{"claim": CLAIM, "evidence": SENTENCES}]},
        )
        assert batch.status_code == 200, batch.text
        bad = httpx.post(f"{base}/predict", json={"claim": CLAIM, "evidence": ["ok", 3]})
        assert bad.status_code == 422 and bad.json()["field"] == "evidence"
