"""Evidence selection (tasks/model/preprocess.py): what is kept, in which order, and that a
model's recorded selection is what its predictor applies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from citeops.tasks.classifier.preprocess import (
    META_KEY,
    EvidenceSelection,
    EvidenceSelector,
    SelectionError,
    keep_in_budget,
    split_sentences,
)

CLAIM = "Aspirin lowers the risk of colorectal cancer."
FILLER = [
    f"Cohort {i} enrolled volunteers from several regional hospitals in the study period."
    for i in range(8)
]
RATIONALE = "Daily aspirin lowered the risk of colorectal cancer by a third."


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    from transformers import AutoTokenizer

    from citeops.tasks.classifier.base import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def selector(tokenizer, method: str, budget: int | None = 40, lead: int = 0) -> EvidenceSelector:  # noqa: ANN001
    return EvidenceSelector(EvidenceSelection(method, budget, lead), tokenizer, max_length=128)


@pytest.mark.parametrize("method", ["bm25", "similarity"])
def test_rationale_as_last_sentence_is_kept_under_a_small_budget(tokenizer, method: str) -> None:  # noqa: ANN001
    evidence = " ".join([*FILLER, RATIONALE])
    kept = selector(tokenizer, method, budget=40).select(CLAIM, evidence)
    assert RATIONALE in kept
    assert len(tokenizer(kept, add_special_tokens=False)["input_ids"]) <= 40
    assert len(kept) < len(evidence) / 3


def test_kept_sentences_stay_in_their_original_order(tokenizer) -> None:  # noqa: ANN001
    sentences = [
        "Aspirin was given daily.",
        *FILLER[:4],
        "Colorectal cancer incidence was measured.",
        *FILLER[4:],
        RATIONALE,
    ]
    kept = selector(tokenizer, "bm25", budget=60).select(CLAIM, sentences)
    found = [s for s in sentences if s in kept]
    assert len(found) >= 3 and RATIONALE in found
    assert kept == " ".join(found)  # joined in the order of the evidence
    assert kept.index("Colorectal cancer incidence") < kept.index(RATIONALE)


def test_evidence_within_the_budget_is_unchanged(tokenizer) -> None:  # noqa: ANN001
    evidence = "Short  evidence, odd   spacing kept. Second sentence."
    for method in ("lead", "bm25", "similarity"):
        assert selector(tokenizer, method, budget=40).select(CLAIM, evidence) == evidence


def test_off_keeps_the_whole_text_and_joins_a_list(tokenizer) -> None:  # noqa: ANN001
    evidence = " ".join([*FILLER, RATIONALE])
    off = selector(tokenizer, "off", budget=None)
    assert off.select(CLAIM, evidence) == evidence
    assert off.select(CLAIM, [*FILLER, RATIONALE]) == evidence


def test_lead_sentences_are_kept_before_ranked_ones(tokenizer) -> None:  # noqa: ANN001
    sentences = [*FILLER, RATIONALE]
    kept = selector(tokenizer, "bm25", budget=40, lead=1).select(CLAIM, sentences)
    assert kept.startswith(FILLER[0]) and kept.endswith(RATIONALE)


def test_default_budget_is_what_max_length_leaves_beside_the_claim(tokenizer) -> None:  # noqa: ANN001
    chosen = selector(tokenizer, "bm25", budget=None)
    claim_tokens = len(tokenizer(CLAIM, add_special_tokens=False)["input_ids"])
    assert chosen.budget(claim_tokens) == 128 - 3 - claim_tokens
    assert chosen.budget(200) == 64  # a very long claim still leaves half for the evidence


def test_keep_in_budget_skips_what_does_not_fit_and_never_returns_nothing() -> None:
    assert keep_in_budget([10, 50, 10, 10], ranking=[1, 3, 0, 2], budget=25) == [0, 3]
    assert keep_in_budget([90, 80], ranking=[1, 0], budget=20) == [1]


def test_split_sentences_on_an_abstract() -> None:
    text = "We studied 2.5 mg doses (p < 0.05). Results were mixed. E. coli grew."
    assert split_sentences(text)[:2] == [
        "We studied 2.5 mg doses (p < 0.05).",
        "Results were mixed.",
    ]
    assert split_sentences("   ") == []


def test_selection_round_trips_through_meta_and_old_models_are_off() -> None:
    chosen = EvidenceSelection("bm25", 96, 1)
    assert EvidenceSelection.from_meta({META_KEY: json.loads(json.dumps(chosen.to_meta()))}) == (
        chosen
    )
    assert EvidenceSelection.from_meta({"max_length": 256}) == EvidenceSelection("off")
    with pytest.raises(SelectionError, match="unknown"):
        EvidenceSelection("tfidf")  # type: ignore[arg-type]


def test_the_predictor_applies_the_selection_recorded_in_the_model(tmp_path: Path) -> None:
    from citeops.configs.settings import load_settings
    from citeops.tasks.classifier.artifact import save_hf_folder
    from citeops.tasks.classifier.base import load_base
    from citeops.tasks.data.multivers import LABELS
    from citeops.tasks.inference.predictor import ClaimVerifier

    model, tokenizer = load_base(load_settings().model)
    meta = {"labels": list(LABELS), "max_length": 64}
    selected = EvidenceSelection("bm25", 24, 0)
    with_selection = save_hf_folder(
        model, tokenizer, tmp_path / "on", meta | {META_KEY: selected.to_meta()}
    )
    without = save_hf_folder(model, tokenizer, tmp_path / "off", meta)
    on, off = ClaimVerifier.from_dir(with_selection), ClaimVerifier.from_dir(without)
    assert on.selection == selected and off.selection == EvidenceSelection("off")
    evidence = " ".join([*FILLER, RATIONALE])
    ids = on.encode_pair(CLAIM, evidence)
    assert "daily aspirin lowered" in tokenizer.decode(ids)
    assert "daily aspirin lowered" not in tokenizer.decode(off.encode_pair(CLAIM, evidence))
    as_text = on.predict_proba([CLAIM], [evidence])
    np.testing.assert_allclose(on.predict_encoded([ids]), as_text, atol=1e-5)
    np.testing.assert_allclose(
        on.predict_proba([CLAIM], [[*FILLER, RATIONALE]]), as_text, atol=1e-5
    )
    assert off.encode_pair(CLAIM, [*FILLER, RATIONALE]) == off.encode_pair(CLAIM, evidence)
