"""Per-class logit offsets tuned on dev and baked into the classifier's output bias.

Class weights already correct the training prior, yet the CPU recipe seldom predicts NEI
on Citation-Integrity (7 % of its pairs). Adding an offset to a class's logit moves the
decision boundary without retraining; the offsets that maximise the mean over datasets of
dev macro F1 (what model selection and evaluation report) are found by a coordinate
search on a grid of -2..2 (wider offsets fitted dev and lost on test in a reduced run),
SUPPORT's fixed at 0 (only differences matter). They are then added to
the last linear layer's bias (:func:`tasks.classifier.base.add_logit_offsets`), so the
PyTorch, ONNX, OpenVINO, pyfunc and plain transformers runtimes all predict
``logits + offsets`` with no code of their own; ``citeops.json`` records them.

One offset per class, not per dataset: the model does not know which dataset a pair comes
from. Offsets are kept only when they raise dev macro F1; the test sets are never read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from citeops.tasks.classifier.base import add_logit_offsets
from citeops.tasks.classifier.stats import classification_metrics, macro_f1, per_group_f1

log = logging.getLogger(__name__)

GRID = tuple(
    round(x, 2) for x in np.arange(-2.0, 2.0001, 0.1)
)  # candidate offsets (±4 over-fitted)
ROUNDS = 3  # coordinate-search sweeps over the classes


@dataclass(frozen=True)
class DevScores:
    """Dev logits with their gold labels and dataset index (into ``names``)."""

    logits: np.ndarray  # (N, C)
    targets: np.ndarray  # (N,)
    groups: np.ndarray | None  # (N,) index into names; None: one dataset
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class OffsetResult:
    """The offsets chosen (label -> value, all 0 when none helped) and the dev score
    before and after them."""

    offsets: dict[str, float]
    dev_before: float
    dev_after: float
    metrics: dict[str, float] = field(default_factory=dict)  # dev metrics with the offsets

    @property
    def applied(self) -> bool:
        return any(v != 0.0 for v in self.offsets.values())

    def mlflow_params(self) -> dict[str, float]:
        return {f"class_offset_{label}": value for label, value in self.offsets.items()}


def dev_score(scores: DevScores, offsets: np.ndarray) -> float:
    """Mean over datasets of macro F1 of ``argmax(logits + offsets)`` (pooled macro F1
    when there is one dataset or no group index)."""
    shifted = scores.logits + offsets
    if scores.groups is not None and len(scores.names) > 1:
        by_group = per_group_f1(shifted, scores.targets, scores.groups, scores.names, ())
        if "f1_macro_by_dataset" in by_group:
            return by_group["f1_macro_by_dataset"]
    return macro_f1(scores.targets, shifted.argmax(axis=1))


def tune_offsets(
    scores: DevScores, grid: Sequence[float] = GRID, rounds: int = ROUNDS
) -> tuple[np.ndarray, float, float]:
    """``(offsets, score before, score after)``: a coordinate search over ``grid`` for each
    class but the first, keeping a change only when it raises :func:`dev_score` (ties go
    to the offset nearest 0, so a flat objective leaves the model alone)."""
    classes = scores.logits.shape[1]
    offsets = np.zeros(classes)
    before = best = dev_score(scores, offsets)
    ordered = sorted(grid, key=abs)
    for _ in range(rounds):
        changed = False
        for c in range(1, classes):
            for value in ordered:
                trial = offsets.copy()
                trial[c] = value
                score = dev_score(scores, trial)
                if score > best + 1e-12:
                    best, offsets, changed = score, trial, True
        if not changed:
            break
    return offsets, before, best


def collect_dev_scores(module: Any, datamodule: Any) -> DevScores:
    """The dev logits of ``module`` (a :class:`ClaimVerifierModule`) over the data module's
    dev loader, in evaluation mode, without gradients."""
    import torch

    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    logits, targets, groups = [], [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            moved = {k: v.to(device) for k, v in batch.items()}
            logits.append(module(moved).float().cpu())
            targets.append(batch["labels"])
            if "groups" in batch:
                groups.append(batch["groups"])
    module.train(was_training)
    return DevScores(
        logits=torch.cat(logits).numpy(),
        targets=torch.cat(targets).numpy(),
        groups=torch.cat(groups).numpy() if groups else None,
        names=tuple(datamodule.groups),
    )


def offset_metrics(
    scores: DevScores, offsets: np.ndarray, labels: Sequence[str]
) -> dict[str, float]:
    """Dev metrics (:func:`classification_metrics`, :func:`per_group_f1`) of the logits
    with ``offsets`` added."""
    shifted = scores.logits + offsets
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    metrics = classification_metrics(probs, scores.targets, labels)
    metrics.update(per_group_f1(probs, scores.targets, scores.groups, scores.names, labels))
    return metrics


def tune_and_bake(module: Any, datamodule: Any, labels: Sequence[str]) -> OffsetResult:
    """Tune offsets on the data module's dev set (:func:`tune_offsets`) and add them to the
    module's classifier bias when they raise the dev score; what was chosen."""
    scores = collect_dev_scores(module, datamodule)
    offsets, before, after = tune_offsets(scores)
    if after > before:
        add_logit_offsets(module.model, offsets.tolist())
    else:
        offsets = np.zeros_like(offsets)
    result = OffsetResult(
        offsets={label: float(v) for label, v in zip(labels, offsets, strict=True)},
        dev_before=before,
        dev_after=max(before, after),
        metrics=offset_metrics(scores, offsets, labels),
    )
    log.info(
        "class offsets %s: dev macro F1 by dataset %.4f -> %.4f",
        {k: round(v, 2) for k, v in result.offsets.items()},
        result.dev_before,
        result.dev_after,
    )
    return result
