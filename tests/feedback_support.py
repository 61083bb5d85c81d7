"""Helpers of the feedback-quality tests: pairs whose right label a keyword in the evidence
gives, and a probability source that reads it (the boundary the tests replace)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from citeops.tasks.data.multivers import LABELS

KEYWORDS = {"SUPPORT": "confirmed", "NEI": "unrelated", "REFUTE": "contradicted"}


def keyword_pair(i: int, label: str) -> tuple[str, str]:
    """A (claim, evidence) pair whose right label is ``label`` (its keyword is in the
    evidence)."""
    return (
        f"Compound {i} lowers systolic blood pressure in adults.",
        f"In trial {i} the effect of compound {i} was {KEYWORDS[label]} by the authors.",
    )


def flipped(label: str, i: int) -> str:
    """Another label than ``label`` (which one depends on ``i``)."""
    others = [other for other in LABELS if other != label]
    return others[i % 2]


@dataclass
class KeywordScorer:
    """A confident, right model of :func:`keyword_pair` pairs: 0.9 on the keyword's label,
    the rest shared; uniform without a keyword."""

    version: str = "keyword-oracle"
    calls: int = 0

    def __call__(self, claims: Sequence[str], evidences: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for evidence in evidences:
            found = [label for label, word in KEYWORDS.items() if word in evidence]
            if not found:
                rows.append([1 / 3] * 3)
                continue
            rows.append([0.9 if label == found[0] else 0.05 for label in LABELS])
        return np.array(rows)
