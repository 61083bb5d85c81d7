"""The statistics of the verifier, one convention everywhere: training's model selection,
``citeops evaluate``, the gate, the drift reference and the benchmarks.

Macro F1 averages the F1 of **all three labels**, a label never predicted and absent from
the gold labels counting as 0 (scikit-learn's ``labels=[0, 1, 2], zero_division=0``). The
point estimate and its bootstrap interval come from the same functions, so a printed
figure always sits inside its printed interval's method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from citeops.tasks.data.multivers import LABELS

CONFIDENCE = 0.95


NUM_CLASSES = len(LABELS)


def _as_ids(values: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _f1_from_counts(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-class F1 ``2 tp / (predicted + actual)``, 0 where both counts are 0."""
    denominator = predicted + actual
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, 2.0 * tp / safe, 0.0)


def _indicators(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positive, predicted, actual) one-hot matrices of shape (n, classes)."""
    classes = np.arange(NUM_CLASSES)
    actual = gold[:, None] == classes
    predicted = pred[:, None] == classes
    return (actual & predicted).astype(np.float64), predicted.astype(np.float64), actual


def class_f1(gold: Sequence[int], pred: Sequence[int]) -> dict[str, float]:
    """F1 of each label, keyed by name (``sklearn`` ``average=None``, ``zero_division=0``)."""
    tp, predicted, actual = _indicators(_as_ids(gold), _as_ids(pred))
    scores = _f1_from_counts(tp.sum(0), predicted.sum(0), actual.sum(0).astype(np.float64))
    return {label: float(score) for label, score in zip(LABELS, scores, strict=True)}


def macro_f1(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Macro F1 over the three labels (``sklearn`` ``labels=[0, 1, 2]``, ``zero_division=0``)."""
    return float(np.mean(list(class_f1(gold, pred).values())))


def _same_length_ids(*vectors: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """The label vectors as id arrays; ValueError unless all are equally long and non-empty."""
    ids = [_as_ids(v) for v in vectors]
    lengths = [len(v) for v in ids]
    if lengths[0] == 0 or len(set(lengths)) > 1:
        shown = ", ".join(map(str, lengths))
        raise ValueError(f"need equally long, non-empty labels; got {shown}")
    return ids


def _bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """How many times each of ``n`` examples is drawn in each resample, shape
    ``(resamples, n)``: draws with replacement, ``numpy`` seed ``seed``."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples) * n)[:, None]
    weights = np.bincount((draws + offsets).ravel(), minlength=resamples * n)
    return weights.reshape(resamples, n).astype(np.float64)


def _resampled_macro_f1(
    weights: np.ndarray, gold: np.ndarray, predictions: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Macro F1 of each prediction vector in every resample (one array per vector)."""
    per_model = [_indicators(gold, pred) for pred in predictions]
    actual = per_model[0][2].astype(np.float64)
    columns = [part for tp, pred, _ in per_model for part in (tp, pred)]
    counts = weights @ np.hstack([*columns, actual])
    parts = np.split(counts, 2 * len(predictions) + 1, axis=1)
    actual_n = parts[-1]
    return [
        _f1_from_counts(parts[2 * k], parts[2 * k + 1], actual_n).mean(1)
        for k in range(len(predictions))
    ]


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_f1_interval(
    gold: Sequence[int],
    pred: Sequence[int],
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Macro F1 of one model with a bootstrap percentile interval (what ``citeops evaluate``
    reports); the same resampling as :func:`paired_bootstrap_f1_difference`.

    Returns:
        ``(point, low, high)``: macro F1 on all examples and the interval at ``confidence``.

    Raises:
        ValueError: no examples, lengths differ, or ``resamples`` < 1.
    """
    y, a = _same_length_ids(gold, pred)
    (scores,) = _resampled_macro_f1(_bootstrap_weights(len(y), resamples, seed), y, [a])
    return (macro_f1(y, a), *_percentiles(scores, confidence))


def paired_bootstrap_f1_difference(
    gold: Sequence[int],
    candidate: Sequence[int],
    champion: Sequence[int],
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Macro F1 of ``candidate`` minus that of ``champion``, with a paired bootstrap interval.

    Each resample draws example indices with replacement once and scores both models on
    them (paired), so the interval reflects the difference, not two independent noises.

    Returns:
        ``(point, low, high)``: the difference on all examples and the percentile interval
        at ``confidence`` over ``resamples`` resamples drawn with ``numpy`` seed ``seed``.

    Raises:
        ValueError: no examples, lengths differ, or ``resamples`` < 1.
    """
    y, a, b = _same_length_ids(gold, candidate, champion)
    weights = _bootstrap_weights(len(y), resamples, seed)
    scores_a, scores_b = _resampled_macro_f1(weights, y, [a, b])
    point = macro_f1(y, a) - macro_f1(y, b)
    return (float(point), *_percentiles(scores_a - scores_b, confidence))


def _correct(values: Sequence[bool] | Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-item correctness as 0.0 / 1.0; ValueError when there are no items."""
    correct = np.asarray(values, dtype=np.float64)
    if correct.ndim != 1 or len(correct) == 0:
        raise ValueError(f"need a non-empty vector of right/wrong answers; got {correct.shape}")
    return correct


def bootstrap_accuracy_interval(
    correct: Sequence[bool] | np.ndarray,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Accuracy (the share of ``correct``) with a bootstrap percentile interval, drawn as
    :func:`bootstrap_f1_interval` draws.

    Returns:
        ``(point, low, high)``.

    Raises:
        ValueError: no items, or ``resamples`` < 1.
    """
    right = _correct(correct)
    scores = _bootstrap_weights(len(right), resamples, seed) @ right / len(right)
    return (float(right.mean()), *_percentiles(scores, confidence))


def bootstrap_accuracy_difference(
    correct_a: Sequence[bool] | np.ndarray,
    correct_b: Sequence[bool] | np.ndarray,
    resamples: int,
    seed: int,
    paired: bool,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Accuracy of ``a`` minus that of ``b`` with a bootstrap percentile interval.

    ``paired``: both were judged on the same items (item ``i`` of both vectors is the same
    example, as the shadow of a request); each resample draws the items once and scores
    both, as :func:`paired_bootstrap_f1_difference` does. Unpaired (the two arms of an A/B
    split, different items): each group is resampled on its own (seeds ``seed`` and
    ``seed + 1``) and the resampled accuracies are differenced.

    Returns:
        ``(point, low, high)``.

    Raises:
        ValueError: a group has no items, paired groups differ in length, or
            ``resamples`` < 1.
    """
    a, b = _correct(correct_a), _correct(correct_b)
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired answers must be equally long; got {len(a)} and {len(b)}")
        scores = _bootstrap_weights(len(a), resamples, seed) @ (a - b) / len(a)
    else:
        scores_a = _bootstrap_weights(len(a), resamples, seed) @ a / len(a)
        scores = scores_a - _bootstrap_weights(len(b), resamples, seed + 1) @ b / len(b)
    return (float(a.mean() - b.mean()), *_percentiles(scores, confidence))


def confusion_matrix(
    gold: Sequence[int], predicted: Sequence[int], classes: int
) -> list[list[int]]:
    """Counts ``[gold][predicted]`` over ``classes`` label ids (scikit-learn)."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    if len(gold) == 0:
        return [[0] * classes for _ in range(classes)]
    return sk_confusion_matrix(gold, predicted, labels=list(range(classes))).tolist()


def majority_label(labels: Sequence[int], num_classes: int = NUM_CLASSES) -> int:
    """The most frequent label id; a tie goes to the lowest id (SUPPORT before NEI)."""
    if len(labels) == 0:
        raise ValueError("no labels to take the majority of")
    return int(np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).argmax())


def per_class_auroc(probs: Any, targets: Any, num_classes: int) -> list[float | None]:
    """One-vs-rest AUROC of each class; ``None`` where the class is absent or alone."""
    from sklearn.metrics import roc_auc_score

    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    scores: list[float | None] = []
    for c in range(num_classes):
        positives = int((t == c).sum())
        if positives == 0 or positives == len(t):
            scores.append(None)
            continue
        scores.append(float(roc_auc_score(t == c, p[:, c])))
    return scores


def classification_metrics(
    probs: Any, targets: Any, labels: Sequence[str] = LABELS
) -> dict[str, float]:
    """Accuracy, F1 (macro, micro, per class) and AUROC (macro, weighted) as floats.

    F1 follows this module's convention (:func:`macro_f1`). AUROC is averaged over the
    classes present in the targets (a class with no positives, or only positives, has no
    AUROC), so a small evaluation slice does not drag the average to zero.

    Args:
        probs: class probabilities, shape (N, C).
        targets: gold label ids, shape (N,).
        labels: class names, giving the ``f1_<label>`` / ``auroc_<label>`` keys.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    if len(t) == 0:
        return {}
    predicted = p.argmax(axis=1)
    per_class = class_f1(t, predicted)
    accuracy = float((predicted == t).mean())
    out: dict[str, float] = {
        "accuracy": accuracy,
        "f1_macro": macro_f1(t, predicted),
        "f1_micro": accuracy,  # single-label, every class counted: micro F1 is accuracy
    }
    for name, key in zip(labels, LABELS, strict=True):
        out[f"f1_{name}"] = per_class[key]
    aurocs = per_class_auroc(p, t, len(labels))
    support = np.bincount(t, minlength=len(labels))
    present = [(a, int(support[c])) for c, a in enumerate(aurocs) if a is not None]
    for name, value in zip(labels, aurocs, strict=True):
        if value is not None:
            out[f"auroc_{name}"] = value
    if present:
        out["auroc_macro"] = float(np.mean([a for a, _ in present]))
        out["auroc_weighted"] = float(
            np.average([a for a, _ in present], weights=[n for _, n in present])
        )
    return out


def per_group_f1(
    probs: Any,
    targets: Any,
    groups: Any | None,
    names: Sequence[str],
    labels: Sequence[str],
) -> dict[str, float]:
    """``f1_macro_<dataset>`` for each dataset and ``f1_macro_by_dataset``, their mean.

    The mean over datasets is what evaluation reports; macro F1 over the pooled datasets
    flatters a model that merely tells the datasets apart (their label mixes differ).
    """
    if groups is None or not names:
        return {}
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    g = np.asarray(groups)
    out: dict[str, float] = {}
    for index, name in enumerate(names):
        chosen = g == index
        if chosen.any():
            out[f"f1_macro_{name}"] = macro_f1(t[chosen], p[chosen].argmax(axis=1))
    if out:
        out["f1_macro_by_dataset"] = sum(out.values()) / len(out)
    return out


def majority_baseline(train_labels: Sequence[int], targets: Any, labels: Sequence[str] = LABELS):
    """Metrics of always predicting the most frequent class of ``train_labels``."""
    majority = majority_label(train_labels, len(labels))
    n = len(np.asarray(targets))
    probs = np.zeros((n, len(labels)), dtype=np.float32)
    probs[:, majority] = 1.0
    result = classification_metrics(probs, targets, labels)
    result["majority_label"] = labels[majority]  # type: ignore[assignment]
    return result
