"""The siamese head: its two passes equal the earlier one-pass form and each side encoded
alone, it saves, loads, exports to
ONNX / OpenVINO with parity, trains and serves through the usual paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from citeops.configs.settings import load_settings
from citeops.tasks.classifier.base import BaseModelError, load_base
from citeops.tasks.classifier.siamese import (
    MODEL_TYPE,
    SiameseBertForSequenceClassification,
    one_pass_features,
)
from citeops.tasks.inference.loading import load_verifier
from citeops.tasks.inference.predictor import ClaimVerifier
from citeops.tasks.inference.runtimes import encoded_proba
from citeops.tasks.inference.smoke import parity_pairs
from citeops.tasks.registry.export import export_with_parity

EVIDENCE = ["Drug X halved deaths in a trial.", "Mice without gene Y lived longer, it was found."]
CLAIMS = ["Drug X lowers mortality.", "Gene Y shortens life."]


@pytest.fixture
def siamese_folder(tmp_path: Path) -> Path:
    model, tokenizer = load_base(load_settings(model={"head": "siamese"}).model, seed=3)
    assert isinstance(model, SiameseBertForSequenceClassification)
    folder = tmp_path / "siamese"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _mean_state(model: SiameseBertForSequenceClassification, ids: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    return model.bert(input_ids=ids, position_ids=positions).last_hidden_state.mean(dim=1)


def test_one_pass_equals_each_side_encoded_alone() -> None:
    model, tokenizer = load_base(load_settings(model={"head": "siamese"}).model, seed=3)
    model.eval()
    pairs = tokenizer(EVIDENCE, CLAIMS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**pairs).logits
        for row, (evidence, claim) in enumerate(zip(EVIDENCE, CLAIMS, strict=True)):
            v = _mean_state(model, tokenizer(evidence, return_tensors="pt")["input_ids"])
            claim_ids = tokenizer(claim, return_tensors="pt")["input_ids"][:, 1:]  # no [CLS]
            positions = torch.arange(1, claim_ids.shape[1] + 1).unsqueeze(0)
            u = model.bert(input_ids=claim_ids, position_ids=positions).last_hidden_state
            u = u.mean(dim=1)
            alone = model.classifier(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))
            assert torch.allclose(alone[0], logits[row], atol=1e-5)
    # the claim side matters: another claim, other logits
    swapped = tokenizer(EVIDENCE, CLAIMS[::-1], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(model(**swapped).logits, logits)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_two_passes_give_the_features_of_the_one_pass_form(attention: str) -> None:
    """Same maths as the block-masked single pass the models were trained with, on rows
    of very different lengths (padding on both sides) and a row without a claim."""
    model, tokenizer = load_base(load_settings(model={"head": "siamese"}).model, seed=3)
    model.config._attn_implementation = attention
    model.eval()
    evidence = EVIDENCE + ["A much longer evidence text " * 6, "Short."]
    claims = CLAIMS + ["Short claim.", "A claim that is longer than its evidence, by far."]
    batch = tokenizer(evidence, claims, padding=True, return_tensors="pt")
    with torch.no_grad():
        two = model.pair_features(**batch)
        one = one_pass_features(
            model, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        assert torch.allclose(two, one, atol=1e-5)
        # no segments: the whole input is the evidence, the claim embedding is zero
        alone = tokenizer(evidence, padding=True, return_tensors="pt")
        features = model.pair_features(alone["input_ids"], alone["attention_mask"])
    hidden = model.config.hidden_size
    assert torch.count_nonzero(features[:, :hidden]) == 0
    assert torch.count_nonzero(features[:, hidden : 2 * hidden]) > 0


def test_serving_runs_the_siamese_head_in_two_passes(siamese_folder: Path) -> None:
    verifier = ClaimVerifier.from_dir(siamese_folder)
    assert verifier.two_pass
    pairs = list(zip(CLAIMS, EVIDENCE, strict=True))
    encoded = [verifier.encode_pair(c, e) for c, e in pairs]
    batch = verifier.tokenizer(EVIDENCE, CLAIMS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(verifier.model(**batch).logits, dim=-1).numpy()
    assert np.abs(verifier.predict_encoded(encoded) - expected).max() < 1e-5


def test_a_saved_siamese_model_loads_back_as_itself(siamese_folder: Path) -> None:
    verifier = ClaimVerifier.from_dir(siamese_folder)
    assert verifier.model.config.model_type == MODEL_TYPE
    again = ClaimVerifier.from_dir(siamese_folder)
    first = verifier.predict_proba(CLAIMS, EVIDENCE)
    assert np.allclose(first, again.predict_proba(CLAIMS, EVIDENCE), atol=1e-6)
    # continued training from it keeps the head, whatever model.head says
    model, _ = load_base(load_settings(model={"base_model": str(siamese_folder)}).model)
    assert isinstance(model, SiameseBertForSequenceClassification)


PLAIN_TRANSFORMERS = """
import json, sys
from transformers import AutoModelForSequenceClassification, pipeline
folder, pairs = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
pipe = pipeline("text-classification", model=folder, trust_remote_code=True)
scores = [
    {row["label"]: row["score"] for row in pipe({"text": e, "text_pair": c}, top_k=None)}
    for c, e in pairs
]
ours = [name for name in sys.modules if name.startswith("citeops")]
print(json.dumps({"class": type(model).__name__, "scores": scores, "citeops": ours}))
"""


def test_a_saved_siamese_folder_loads_with_plain_transformers(siamese_folder: Path) -> None:
    """A user's app, without citeops installed on its path, loads the folder and gets the
    probabilities citeops serves (the modeling file travels in the folder)."""
    config = json.loads((siamese_folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith(
        "SiameseBertForSequenceClassification"
    )
    pairs = list(zip(CLAIMS, EVIDENCE, strict=True))
    result = subprocess.run(
        [sys.executable, "-I", "-c", PLAIN_TRANSFORMERS, str(siamese_folder), json.dumps(pairs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=siamese_folder.parent,  # -I and this cwd: the citeops checkout is not importable
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["class"] == "SiameseBertForSequenceClassification"
    assert loaded["citeops"] == []
    served = ClaimVerifier.from_dir(siamese_folder).predict_proba(CLAIMS, EVIDENCE)
    labels = ClaimVerifier.from_dir(siamese_folder).labels
    for row, probs in zip(loaded["scores"], served, strict=True):
        assert [row[label] for label in labels] == pytest.approx(list(probs), abs=1e-5)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_siamese_export_matches_pytorch_fp32(siamese_folder: Path, runtime: str) -> None:
    settings = load_settings(
        serve={"precision": "fp32", "openvino_precision": "fp32"}, registry={"parity_pairs": 8}
    )
    report = export_with_parity(siamese_folder, settings)
    assert report.exportable, report.reason
    pairs = parity_pairs(settings)
    reference = encoded_proba(load_verifier(str(siamese_folder), settings), pairs)
    served = encoded_proba(load_verifier(str(siamese_folder), settings, runtime=runtime), pairs)
    assert np.abs(served - reference).max() < 1e-4


def test_siamese_needs_a_bert_family_base(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertModel

    from citeops.tasks.classifier.base import minilm_path

    folder = tmp_path / "distil"
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(folder)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    settings = load_settings(model={"base_model": str(folder), "head": "siamese"})
    with pytest.raises(BaseModelError, match="model.head 'cross'"):
        load_base(settings.model)
    cross, _ = load_base(load_settings(model={"base_model": str(folder)}).model)
    assert cross.config.model_type == "distilbert"


def test_training_and_evaluating_a_siamese_model(monkeypatch: pytest.MonkeyPatch) -> None:

    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    monkeypatch.setenv("CITEOPS_MODEL__HEAD", "siamese")
    assert run_cli(app, ["train", "--json", "--max-steps", "2", "--max-examples", "24"]) == 0
    verifier = load_verifier("models:/claim-verifier/1", load_settings())
    assert verifier.model.config.model_type == MODEL_TYPE
    probs = verifier.predict_proba(CLAIMS, EVIDENCE)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert run_cli(app, ["evaluate", "--model-uri", "models:/claim-verifier/1", "--json"]) == 0


def test_fit_head_fits_the_classifier_on_frozen_features() -> None:
    from citeops.tasks.train.warm_start import fit_head

    model, tokenizer = load_base(load_settings(model={"head": "siamese"}).model, seed=5)
    words = ["alpha beta gamma", "river stone cloud", "seven eight nine"]
    evidence = [f"{words[i % 3]} {'is ' * (i % 4)}noted here." for i in range(30)]
    claims = [f"Claim number {i}." for i in range(30)]
    labels = torch.tensor([i % 3 for i in range(30)])
    batch = dict(tokenizer(evidence, claims, padding=True, return_tensors="pt"))
    encoder_before = model.bert.embeddings.word_embeddings.weight.clone()
    head_before = model.classifier.weight.clone()
    assert fit_head(model, [batch | {"labels": labels}], class_weighted=True) == 30
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, encoder_before)
    assert not torch.equal(model.classifier.weight, head_before)
    model.eval()
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(dim=-1)
    assert (predicted == labels).float().mean() >= 0.9  # the random head: about a third
    # a label without examples: the head is left as it is
    fitted = model.classifier.weight.clone()
    assert fit_head(model, [batch | {"labels": labels % 2}], class_weighted=True) == 0
    assert torch.equal(model.classifier.weight, fitted)


def test_the_head_is_warm_started_only_when_it_is_new() -> None:
    from citeops.tasks.train.fit import training_params, warms_head

    fresh = load_settings(model={"head": "siamese"}, train={"head_warm_start": True})
    assert warms_head(fresh) and training_params(fresh, "32")["head_warm_start"] is True
    continued = load_settings(
        model={"head": "siamese"},
        train={"head_warm_start": True, "init_from": "models:/claim-verifier@champion"},
    )
    assert not warms_head(continued)
    assert training_params(continued, "32")["head_warm_start"] is False
