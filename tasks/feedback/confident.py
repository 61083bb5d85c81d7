"""The confident-learning rule for finding label issues, written against its paper.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", Journal of Artificial Intelligence Research 70 (2021) 1373-1411, section 3.1
(the confident joint) and section 3.2 (rank and prune, by self-confidence): the method
cleanlab's ``find_label_issues(filter_by="confident_learning")`` implements. cleanlab is
not a dependency of citeops; this is the rule alone, on out-of-sample probabilities.

- the per-class threshold of class ``j`` is the mean probability of ``j`` over the items
  whose given label is ``j`` (their mean self-confidence);
- an item's confident class is, among the classes whose probability reaches their
  threshold, the most probable one;
- an item is a label issue when its confident class exists, differs from its given label
  and is more probable than the given label;
- issues are ranked by self-confidence (the probability of the given label), lowest first.

A class that no item is given has no threshold (no item can be confidently in it).
"""

from __future__ import annotations

import numpy as np


def per_class_thresholds(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``t[j]`` = mean of ``probs[i, j]`` over items ``i`` with ``given[i] == j``; ``inf``
    for a class no item is given.

    Args:
        probs: (N, K) out-of-sample class probabilities, rows summing to 1.
        given: (N,) given label ids in ``0..K-1``.
    """
    probs, given = _checked(probs, given)
    thresholds = np.full(probs.shape[1], np.inf)
    for j in range(probs.shape[1]):
        mine = given == j
        if mine.any():
            thresholds[j] = float(probs[mine, j].mean())
    return thresholds


def confident_classes(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each item's confident class (the most probable class at or above its threshold),
    ``-1`` where no class reaches its threshold."""
    above = probs >= thresholds[None, :]
    best = np.where(above, probs, -np.inf).argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def find_label_issues(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Indices of the items whose given label is likely wrong, lowest self-confidence
    first (see the module for the rule and the paper).

    Raises:
        ValueError: shapes disagree, or a given label is not a column of ``probs``.
    """
    probs, given = _checked(probs, given)
    if not len(given):
        return np.zeros(0, dtype=np.int64)
    confident = confident_classes(probs, per_class_thresholds(probs, given))
    rows = np.arange(len(given))
    self_confidence = probs[rows, given]
    other = (confident >= 0) & (confident != given)
    issue = other & (probs[rows, np.maximum(confident, 0)] > self_confidence)
    found = np.flatnonzero(issue)
    return found[np.argsort(self_confidence[found], kind="stable")]


def _checked(probs: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    if probs.ndim != 2 or given.shape != (probs.shape[0],):
        raise ValueError(f"probs {probs.shape} and labels {given.shape} do not match")
    if len(given) and (given.min() < 0 or given.max() >= probs.shape[1]):
        raise ValueError(f"labels must be in 0..{probs.shape[1] - 1}")
    return probs, given
