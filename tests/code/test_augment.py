from __future__ import annotations

from pathlib import Path

from citeops.configs.settings import load_settings
from citeops.tasks.data.augment import (
    RATIONALE_ONLY,
    RATIONALE_REMOVED,
    SELF_SUPPORT,
    augment,
    oversample_rare_classes,
    rationale_only,
    rationale_removed,
    self_support,
    self_support_variants,
)
from citeops.tasks.data.multivers import LABEL2ID, Example, read_split
from citeops.tasks.train.training_set import build_training_set

SENTENCES = ("Background here.", "Drug X cut deaths by half.", "Methods there.", "It was safe.")


def _pair(label: str = "SUPPORT", rationale: tuple[int, ...] = (1, 3)) -> Example:
    return Example(
        claim="Drug X lowers mortality.",
        evidence=" ".join(SENTENCES),
        label=LABEL2ID[label],
        dataset="scifact",
        split="train",
        sentences=SENTENCES,
        rationale=rationale,
    )


def test_rationale_only_keeps_the_deciding_sentences_in_order() -> None:
    extra = rationale_only(_pair())
    assert extra.evidence == "Drug X cut deaths by half. It was safe."
    assert extra.label == LABEL2ID["SUPPORT"]
    assert extra.split == RATIONALE_ONLY


def test_rationale_removed_is_nei_without_the_deciding_sentences() -> None:
    extra = rationale_removed(_pair("REFUTE"))
    assert extra is not None
    assert extra.evidence == "Background here. Methods there."
    assert extra.label == LABEL2ID["NEI"]
    assert extra.split == RATIONALE_REMOVED
    assert rationale_removed(_pair(rationale=(0, 1, 2, 3))) is None  # nothing left


def test_augment_skips_nei_and_unknown_rationale_and_is_seeded() -> None:
    pairs = [_pair(), _pair("NEI", ()), _pair("REFUTE", ())] * 50
    everything = augment(pairs, 1.0, 1.0, seed=1)
    assert len(everything) == 100  # only the 50 SUPPORT pairs with a rationale, two each
    half = augment(pairs, 0.5, 0.0, seed=1)
    assert {ex.split for ex in half} == {RATIONALE_ONLY}
    assert 10 < len(half) < 40
    assert half == augment(pairs, 0.5, 0.0, seed=1)
    assert augment(pairs, 0.0, 0.0, seed=1) == []


def test_training_augments_the_train_pairs_only(monkeypatch, data_dir: Path) -> None:
    import mlflow
    from citeops.tasks.train.fit import fit_candidate

    monkeypatch.setenv("CITEOPS_PROFILE", "test")
    train = {"max_examples": 40, "max_steps": 1, "include_feedback": False}
    plain = build_training_set(load_settings(train=train))
    settings = load_settings(
        train=train | {"augment_rationale_only": 1.0, "augment_rationale_removed": 1.0}
    )
    with_rationale = sum(ex.label != LABEL2ID["NEI"] and bool(ex.rationale) for ex in plain.train)
    assert with_rationale > 10
    candidate = fit_candidate(settings, plain, progress=False, log_model=False)
    params = mlflow.MlflowClient(settings.mlflow.tracking_uri).get_run(candidate.run_id).data.params
    expected = augment(plain.train, 1.0, 1.0, settings.train.seed)
    assert with_rationale <= len(expected) <= 2 * with_rationale
    assert int(params["augmented_examples"]) == len(expected)
    assert int(params["train_examples"]) == 40 + int(params["augmented_examples"])
    assert int(params["dev_examples"]) == len(plain.dev)  # dev is never augmented
    assert len(plain.train) == 40  # the caller's training set is not changed
    real = read_split(data_dir, "scifact", "train")
    assert all(ex.sentences and " ".join(ex.sentences) == ex.evidence for ex in real)


def _folded(text: str) -> str:
    return " ".join(text.casefold().replace(".", " ").split())


def test_self_support_pairs_state_their_own_claim_and_are_support() -> None:
    claims = [f"Drug {i} lowers mortality in trial {i}." for i in range(200)]
    pairs = [
        Example(claim=c, evidence=f"Other text {i}. More.", label=LABEL2ID["REFUTE"], split="train")
        for i, c in enumerate(claims)
    ]
    extra = self_support(pairs + pairs[:50], 0.5, seed=3)  # repeated claims count once
    assert 60 < len(extra) < 140
    assert len({ex.claim for ex in extra}) == len(extra)
    assert {ex.label for ex in extra} == {LABEL2ID["SUPPORT"]}
    assert {ex.split for ex in extra} == {SELF_SUPPORT}
    assert all(_folded(ex.claim) in _folded(ex.evidence) for ex in extra)
    assert {ex.claim for ex in extra} <= set(claims)  # training claims only
    assert len({ex.evidence == ex.claim for ex in extra}) == 2  # verbatim and rewritten
    assert extra == self_support(pairs + pairs[:50], 0.5, seed=3)
    assert self_support(pairs, 0.0, seed=3) == []


def test_self_support_variants_keep_the_claim_words() -> None:
    claim = "Aspirin lowers the risk of colorectal cancer."
    variants = self_support_variants(claim, "A trial ran for ten years.")
    assert claim in variants and claim.lower() in variants
    assert variants[-1] == "A trial ran for ten years. " + claim
    assert {_folded(v).replace("a trial ran for ten years ", "") for v in variants} == {
        _folded(claim)
    }


def test_oversampling_lifts_each_rare_class_to_its_share_within_its_own_dataset() -> None:
    def pairs(dataset: str, counts: dict[str, int]) -> list[Example]:
        return [
            Example(f"{dataset} {label} {i}", "evidence", LABEL2ID[label], dataset=dataset)
            for label, n in counts.items()
            for i in range(n)
        ]

    balanced = pairs("scifact", {"SUPPORT": 40, "NEI": 35, "REFUTE": 25})
    skewed = pairs("citint", {"SUPPORT": 130, "NEI": 7, "REFUTE": 63})
    extra = oversample_rare_classes(balanced + skewed, 0.2, seed=1)
    assert {ex.dataset for ex in extra} == {"citint"}  # SciFact already holds 25 % or more
    assert {ex.label for ex in extra} == {LABEL2ID["NEI"]}
    assert set(extra) <= set(skewed)  # copies of its own pairs, nothing made up
    nei = 7 + len(extra)
    assert nei / (200 + len(extra)) >= 0.2 > (nei - 1) / (199 + len(extra))  # no more than needed
    copies = {ex.claim: extra.count(ex) for ex in set(extra)}
    assert max(copies.values()) - min(copies.values()) <= 1  # whole copies, then a sample
    assert extra == oversample_rare_classes(balanced + skewed, 0.2, seed=1)  # seeded
    assert oversample_rare_classes(balanced + skewed, 0.0, seed=1) == []
