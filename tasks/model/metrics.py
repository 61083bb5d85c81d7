"""Classification metrics for the 3-way verifier (plain functions over probabilities).

``classification_metrics`` returns accuracy, macro and micro F1, per-class F1 and macro and
weighted one-vs-rest AUROC. AUROC is averaged over the classes present in the targets
(a class with no positives, or only positives, has no AUROC), so a small evaluation
slice does not drag the average to zero.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from citeops.tasks.data.multivers import LABELS


def _as_tensors(probs: Any, targets: Any) -> tuple[Any, Any]:
    import torch

    p = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return p, t


def per_class_auroc(probs: Any, targets: Any, num_classes: int) -> list[float | None]:
    """One-vs-rest AUROC of each class; ``None`` where the class is absent or alone."""
    from torchmetrics.functional.classification import binary_auroc

    p, t = _as_tensors(probs, targets)
    scores: list[float | None] = []
    for c in range(num_classes):
        positives = int((t == c).sum())
        if positives == 0 or positives == len(t):
            scores.append(None)
            continue
        scores.append(float(binary_auroc(p[:, c], (t == c).long())))
    return scores


def classification_metrics(
    probs: Any, targets: Any, labels: Sequence[str] = LABELS
) -> dict[str, float]:
    """Accuracy, F1 (macro, micro, per class) and AUROC (macro, weighted) as floats.

    Args:
        probs: class probabilities, shape (N, C).
        targets: gold label ids, shape (N,).
        labels: class names, giving the ``f1_<label>`` / ``auroc_<label>`` keys.
    """
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    num_classes = len(labels)
    p, t = _as_tensors(probs, targets)
    if len(t) == 0:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"num_classes": num_classes}
        out = {
            "accuracy": float(multiclass_accuracy(p, t, average="micro", **kw)),
            "f1_macro": float(multiclass_f1_score(p, t, average="macro", **kw)),
            "f1_micro": float(multiclass_f1_score(p, t, average="micro", **kw)),
        }
        per_class = multiclass_f1_score(p, t, average="none", **kw)
    for name, value in zip(labels, per_class.tolist(), strict=True):
        out[f"f1_{name}"] = float(value)
    aurocs = per_class_auroc(p, t, num_classes)
    support = np.bincount(t.numpy(), minlength=num_classes)
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
    p, t = _as_tensors(probs, targets)
    g = np.asarray(groups)
    out: dict[str, float] = {}
    for index, name in enumerate(names):
        chosen = g == index
        if chosen.any():
            scores = classification_metrics(p.numpy()[chosen], t.numpy()[chosen], labels)
            out[f"f1_macro_{name}"] = scores["f1_macro"]
    if out:
        out["f1_macro_by_dataset"] = sum(out.values()) / len(out)
    return out


def majority_baseline(train_labels: Sequence[int], targets: Any, labels: Sequence[str] = LABELS):
    """Metrics of always predicting the most frequent class of ``train_labels``."""
    num_classes = len(labels)
    majority = int(np.bincount(np.asarray(train_labels), minlength=num_classes).argmax())
    n = len(np.asarray(targets))
    probs = np.zeros((n, num_classes), dtype=np.float32)
    probs[:, majority] = 1.0
    result = classification_metrics(probs, targets, labels)
    result["majority_label"] = labels[majority]  # type: ignore[assignment]
    return result
