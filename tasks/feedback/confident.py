"""Confident-learning rules for finding label issues, written against their paper.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", Journal of Artificial Intelligence Research 70 (2021) 1373-1411: section 3.1
(the confident joint and its calibration into the joint of given and true labels) and
section 3.2 (rank and prune). cleanlab's ``find_label_issues`` implements the same
rules; cleanlab is not a dependency of citeops. Every rule runs on out-of-sample
probabilities.

- the per-class threshold ``t[j]`` is the mean probability of ``j`` over the items whose
  given label is ``j`` (their mean self-confidence);
- an item's confident class is, among the classes whose probability reaches their
  threshold, the most probable one; the confident joint ``C[i][j]`` counts the items given
  ``i`` whose confident class is ``j``;
- calibration (eq. 2): each row of ``C`` is rescaled to the number of items given that
  label, and the whole to 1: ``Q``, the estimated joint of given and true labels, whose
  off-diagonal mass times ``n`` is the estimated number of wrong labels.

Rules (:data:`RULES`; ``rule=`` of :func:`find_label_issues`):

- ``off_diagonal`` (``C_{y~,y*}`` in the paper; cleanlab's ``confident_learning``
  filter): every item off the diagonal of the confident joint whose confident class is
  more probable than its given label. It flags every item the model confidently
  disagrees with, so a weak model's own mistakes are flagged as label issues;
- ``prune_by_noise_rate`` (PBNR, the paper's section 3.2 and cleanlab's default): for
  each off-diagonal cell ``(i, j)`` of ``Q``, the ``round(n * Q[i][j])`` items given ``i``
  with the largest margin ``p_j - p_i``; it flags only as many items as the calibrated
  joint says are wrong, the most clearly wrong first;
- ``both`` (C+NR): items that ``prune_by_noise_rate`` and prune-by-class (the
  ``round(n * sum_{j != i} Q[i][j])`` items given ``i`` of lowest self-confidence) both
  pick;
- ``posterior`` (the default): the paper's class-conditional noise model (section 2:
  a true label ``j`` is given as ``i`` with probability ``T[j][i]``), with ``T`` the
  columns of ``Q`` normalised, and the model's probabilities as the prior of the true
  label; by Bayes' rule ``P(wrong) = 1 - p_i T[i][i] / sum_j p_j T[j][i]``, and an item is
  an issue when that reaches ``min_wrong`` (0.5: more likely wrong than right) and the
  model's own evidence raised it: it exceeds, by ``MIN_EVIDENCE``, the base rate at which
  that label is wrong (``1 - Q[i][i] / sum_j Q[i][j]``), so a model with no opinion
  (near-uniform probabilities: a tiny random model flagged 98 of 142 labels without this)
  flags nothing however noisy a class looks. Where the
  three rules above flag every item the model confidently disagrees with (with a weak
  model, its own mistakes), this one asks whether the disagreement outweighs how rarely
  the given label is wrong: a label of a class that is often given wrongly (in the
  demo's Citation-Integrity, NEI: 7 % of pairs but about half of its labels flipped)
  needs less disagreement than one that is almost always given rightly.

Measured on the demo's users' labels with the MiniLM champion (``citeops bench
flagging``, BENCHMARKS.md): off_diagonal precision 0.55 at recall 0.67, posterior 0.72 at
0.56 (pooled over 50 draws of 240 labels).

Every rule also requires the model to prefer another label: some class is strictly more
probable than the given one (cleanlab drops issues whose given label is the model's
prediction). Issues are ranked by normalised margin (the probability of the given label
minus the largest other probability), lowest first.

A class that no item is given has no threshold (no item can be confidently in it).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Rule = Literal["posterior", "off_diagonal", "prune_by_noise_rate", "both"]
RULES: tuple[Rule, ...] = ("off_diagonal", "prune_by_noise_rate", "both", "posterior")
DEFAULT_RULE: Rule = "posterior"
MIN_WRONG = 0.5  # the posterior rule's default: the label is more likely wrong than right
# ... and the model's own evidence must raise that chance above the label's base rate by this
MIN_EVIDENCE = 0.05


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


def confident_joint(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``C[i][j]``: items given ``i`` whose confident class is ``j`` (items without one are
    not counted)."""
    probs, given = _checked(probs, given)
    k = probs.shape[1]
    confident = confident_classes(probs, per_class_thresholds(probs, given))
    counted = confident >= 0
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (given[counted], confident[counted]), 1)
    return joint


def calibrated_joint(joint: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``Q``: each row of the confident joint rescaled to the number of items given that
    label, then the whole to sum 1 (the paper's eq. 2). A row with no confident item
    keeps its items on the diagonal (no evidence of noise)."""
    k = joint.shape[0]
    sizes = np.bincount(np.asarray(given, dtype=np.int64), minlength=k).astype(np.float64)
    rows = joint.sum(axis=1, keepdims=True).astype(np.float64)
    scaled = np.where(rows > 0, joint / np.where(rows > 0, rows, 1.0), np.eye(k)) * sizes[:, None]
    total = scaled.sum()
    return scaled / total if total else scaled


def estimated_issue_counts(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``round(n * Q[i][j])`` off the diagonal (0 on it): how many items given ``i`` the
    calibrated joint says are truly ``j``."""
    probs, given = _checked(probs, given)
    joint = calibrated_joint(confident_joint(probs, given), given)
    counts = np.rint(joint * len(given)).astype(np.int64)
    np.fill_diagonal(counts, 0)
    return counts


def noise_transitions(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``T[j][i]`` = P(given ``i`` | true ``j``), the columns of the calibrated joint ``Q``
    normalised (the paper's noise matrix); a true class no item is confidently in keeps
    its label (``T[j][j]`` = 1)."""
    probs, given = _checked(probs, given)
    joint = calibrated_joint(confident_joint(probs, given), given)  # [given, true]
    mass = joint.sum(axis=0)
    k = joint.shape[0]
    return np.where(mass[:, None] > 0, joint.T / np.where(mass > 0, mass, 1.0)[:, None], np.eye(k))


def wrong_label_probability(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """P(true label != given | x, given) by Bayes' rule: the model's probabilities of the
    true label times the noise matrix's chance that the true class is given as ``given``
    (:func:`noise_transitions`), normalised over the true classes."""
    probs, given = _checked(probs, given)
    rows = np.arange(len(given))
    transitions = noise_transitions(probs, given)
    joint = probs * transitions[:, given].T  # [item, true j]: p_j(x) * T[j][given]
    total = joint.sum(axis=1)
    right = joint[rows, given]
    return np.where(total > 0, 1.0 - right / np.where(total > 0, total, 1.0), 0.0)


def normalized_margin(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """The given label's probability minus the largest other probability, in [-1, 1]:
    negative where the model prefers another label."""
    probs, given = _checked(probs, given)
    rows = np.arange(len(given))
    others = probs.copy()
    others[rows, given] = -np.inf
    return probs[rows, given] - others.max(axis=1)


def find_label_issues(
    probs: np.ndarray, given: np.ndarray, rule: Rule = DEFAULT_RULE, min_wrong: float = MIN_WRONG
) -> np.ndarray:
    """Indices of the items whose given label is likely wrong by ``rule`` (see the module),
    lowest normalised margin first.

    Raises:
        ValueError: shapes disagree, a given label is not a column of ``probs``, or the
            rule is unknown.
    """
    probs, given = _checked(probs, given)
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(RULES)}")
    if not len(given):
        return np.zeros(0, dtype=np.int64)
    margin = normalized_margin(probs, given)
    if rule == "off_diagonal":
        issue = _off_diagonal(probs, given)
    elif rule == "posterior":
        wrong = wrong_label_probability(probs, given)
        issue = (wrong >= min_wrong) & (
            wrong >= _given_noise_rates(probs, given)[given] + MIN_EVIDENCE
        )
    else:
        counts = estimated_issue_counts(probs, given)
        issue = _pruned_by_noise_rate(probs, given, counts)
        if rule == "both":
            issue &= _pruned_by_class(probs, given, counts)
    found = np.flatnonzero(issue & (margin < 0))
    return found[np.argsort(margin[found], kind="stable")]


def _given_noise_rates(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """P(true != i | given i) from the calibrated joint: how often label ``i`` is wrong
    before the model looks at the item."""
    joint = calibrated_joint(confident_joint(probs, given), given)
    rows = joint.sum(axis=1)
    return np.where(rows > 0, 1.0 - np.diag(joint) / np.where(rows > 0, rows, 1.0), 0.0)


def _off_diagonal(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    confident = confident_classes(probs, per_class_thresholds(probs, given))
    rows = np.arange(len(given))
    other = (confident >= 0) & (confident != given)
    return other & (probs[rows, np.maximum(confident, 0)] > probs[rows, given])


def _pruned_by_noise_rate(probs: np.ndarray, given: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each off-diagonal cell ``(i, j)``: the ``counts[i][j]`` items given ``i`` with the
    largest margin ``p_j - p_i`` (ties: earlier items first)."""
    issue = np.zeros(len(given), dtype=bool)
    for i, j in zip(*np.nonzero(counts), strict=True):
        mine = np.flatnonzero(given == i)
        margin = probs[mine, j] - probs[mine, i]
        issue[mine[np.argsort(-margin, kind="stable")[: counts[i, j]]]] = True
    return issue


def _pruned_by_class(probs: np.ndarray, given: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each given class ``i``: its ``sum_j counts[i][j]`` items of lowest
    self-confidence."""
    issue = np.zeros(len(given), dtype=bool)
    for i, count in enumerate(counts.sum(axis=1)):
        mine = np.flatnonzero(given == i)
        issue[mine[np.argsort(probs[mine, i], kind="stable")[:count]]] = True
    return issue


def _checked(probs: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    if probs.ndim != 2 or given.shape != (probs.shape[0],):
        raise ValueError(f"probs {probs.shape} and labels {given.shape} do not match")
    if len(given) and (given.min() < 0 or given.max() >= probs.shape[1]):
        raise ValueError(f"labels must be in 0..{probs.shape[1] - 1}")
    return probs, given
