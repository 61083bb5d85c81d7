"""Training-time augmentation from the benchmarks' rationale sentences.

SciFact and Citation-Integrity mark which sentences of a cited document decide its label.
Two kinds of extra training pairs follow from that, both only for SUPPORT / REFUTE pairs
whose rationale is known:

- **rationale only**: the claim with just its rationale sentences, same label. Short pairs
  (cheap to train) with the deciding text in plain view.
- **rationale removed**: the claim with the document's other sentences, labelled NEI. This
  is what NEI means in these benchmarks (a cited, on-topic document without the deciding
  sentences), and Citation-Integrity has few NEI pairs (7 %) to learn it from.

The dev and test sets are never augmented; serving sees the model, not this module.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from citeops.tasks.data.multivers import LABEL2ID, Example

RATIONALE_ONLY = "rationale-only"  # Example.split of the augmented pairs
RATIONALE_REMOVED = "rationale-removed"


def _has_rationale(example: Example) -> bool:
    return example.label != LABEL2ID["NEI"] and bool(example.rationale) and bool(example.sentences)


def rationale_only(example: Example) -> Example:
    """The pair with only its rationale sentences as evidence (in document order)."""
    kept = " ".join(example.sentences[i] for i in example.rationale)
    return replace(example, evidence=kept, split=RATIONALE_ONLY, sentences=(), rationale=())


def rationale_removed(example: Example) -> Example | None:
    """The pair without its rationale sentences, labelled NEI; None if nothing is left."""
    drop = set(example.rationale)
    rest = [s for i, s in enumerate(example.sentences) if i not in drop]
    if not rest:
        return None
    return replace(
        example,
        evidence=" ".join(rest),
        label=LABEL2ID["NEI"],
        split=RATIONALE_REMOVED,
        sentences=(),
        rationale=(),
    )


def augment(
    examples: Sequence[Example], rationale_only_share: float, removed_share: float, seed: int
) -> list[Example]:
    """The augmented pairs for ``examples`` (not the examples themselves).

    Each SUPPORT / REFUTE pair with a known rationale yields a rationale-only pair with
    probability ``rationale_only_share`` and a rationale-removed NEI pair with probability
    ``removed_share``; the draws are seeded, so the same settings give the same pairs.
    """
    rng = random.Random(seed)
    extra: list[Example] = []
    for example in examples:
        if not _has_rationale(example):
            continue
        take_only, take_removed = rng.random(), rng.random()  # two draws for every pair
        if take_only < rationale_only_share:
            extra.append(rationale_only(example))
        if take_removed < removed_share:
            removed = rationale_removed(example)
            if removed is not None:
                extra.append(removed)
    return extra


SELF_SUPPORT = "self-support"  # Example.split of the claim-as-evidence pairs


def _strip_final_punctuation(text: str) -> str:
    return text.rstrip(" .!?;:")


def self_support_variants(claim: str, other_text: str) -> list[str]:
    """Light rewrites of ``claim`` that still state it: the claim itself, lower-cased,
    upper-cased, with its spacing spread, without its final punctuation, and embedded after
    ``other_text`` (a sentence of another pair's evidence)."""
    spread = claim.replace(" ", "  ")
    variants = [
        claim,
        claim.lower(),
        claim.upper(),
        f" {spread}\n",
        _strip_final_punctuation(claim),
    ]
    if other_text:
        variants.append(f"{other_text.strip()} {claim}")
    return variants


def _first_sentence(text: str) -> str:
    head = text.strip().split(". ", 1)[0]
    return head if head.endswith(".") else f"{head}."


def self_support(examples: Sequence[Example], share: float, seed: int) -> list[Example]:
    """SUPPORT pairs whose evidence is a training claim itself or a light rewrite of it
    (:func:`self_support_variants`), for a ``share`` of the distinct claims of
    ``examples`` (seeded draws; each chosen claim gets one variant).

    A claim is its own best evidence: without these pairs the CPU recipe answered REFUTE
    to most claims given as their own evidence (the behavioural checks of
    tasks/validate/behaviour.py). Only training claims are used, never the checks' own.
    """
    if share <= 0 or not examples:
        return []
    rng = random.Random(seed)
    seen: dict[str, Example] = {}
    for example in examples:
        seen.setdefault(" ".join(example.claim.casefold().split()), example)
    pool = [ex for ex in examples if ex.evidence.strip()]
    extra: list[Example] = []
    for example in seen.values():
        if rng.random() >= share:
            continue
        other = rng.choice(pool).evidence if pool else ""
        evidence = rng.choice(self_support_variants(example.claim, _first_sentence(other)))
        extra.append(
            replace(
                example,
                evidence=evidence,
                label=LABEL2ID["SUPPORT"],
                split=SELF_SUPPORT,
                doc_id=-1,
                sentences=(),
                rationale=(),
            )
        )
    return extra


def oversample_rare_classes(
    examples: Sequence[Example], min_share: float, seed: int
) -> list[Example]:
    """Extra copies of each dataset's rarer classes, so that every class present in a
    dataset holds at least ``min_share`` of that dataset's pairs (whole copies first, then
    a seeded sample of the rest; 0: none). Citation-Integrity's NEI is 7 % of its training
    pairs: with 0.2 it trains as about a fifth, and SciFact, already balanced, is untouched.
    """
    if min_share <= 0 or not examples:
        return []
    rng = random.Random(seed)
    extra: list[Example] = []
    for dataset in dict.fromkeys(ex.dataset for ex in examples):
        mine = [ex for ex in examples if ex.dataset == dataset]
        for label in sorted({ex.label for ex in mine}):
            members = [ex for ex in mine if ex.label == label]
            others = len(mine) - len(members)
            # n / (n + others) >= min_share  <=>  n >= min_share * others / (1 - min_share)
            wanted = int(-(-min_share * others // (1 - min_share))) if min_share < 1 else 0
            missing = wanted - len(members)
            if missing <= 0:
                continue
            whole, rest = divmod(missing, len(members))
            extra += members * whole + rng.sample(members, rest)
    return extra
