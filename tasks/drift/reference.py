"""The reference side of drift checks: the model's training data and its own predictions.

* Texts, lengths, vocabulary and gold-label mix come from the ``train`` split of the
  reference datasets (what the model in production was trained on).
* The held-out reference sample is the ``dev`` split (up to ``reference_sample_size`` rows,
  seeded): it gives the baseline out-of-vocabulary rate and, scored by the model, the
  reference prediction mix and confidences.
* Reference predictions are stored once per model version as JSON under
  ``<home>/drift/reference/`` and reused; with no model, prediction checks are skipped
  with the reason "no reference predictions".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.classifier.artifact import ModelLoadError
from citeops.tasks.data.multivers import LABELS, Example, read_splits, shuffled
from citeops.tasks.drift.checks import token_lengths, vocabulary
from citeops.tasks.inference.aliases import alias_uri
from citeops.tasks.inference.loading import load_verifier, resolve_version

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

TRAIN_SPLIT = "train"
HOLDOUT_SPLIT = "dev"


@dataclass
class ReferencePredictions:
    """A model's class probabilities on the held-out reference sample."""

    model_uri: str
    model_version: str | None
    datasets: tuple[str, ...]
    labels: tuple[str, ...]
    probabilities: np.ndarray  # (rows, len(labels))
    gold: list[int] | None = None  # gold label ids of the same rows (for the label-shift check)
    split: str = HOLDOUT_SPLIT
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def predicted(self) -> list[str]:
        return [self.labels[i] for i in self.probabilities.argmax(axis=1)]

    @property
    def confidences(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    def predicted_counts(self) -> dict[str, int]:
        counts = Counter(self.predicted)
        return {label: counts.get(label, 0) for label in self.labels}

    def expected_counts(self, label_counts: dict[str, int]) -> dict[str, float] | None:
        """The prediction mix this model would give on data with the training label mix:
        ``label_counts`` pushed through P(predicted | gold) measured on the held-out rows
        (black-box shift estimation). ``None`` without gold labels."""
        if not self.gold or len(self.gold) != len(self.probabilities):
            return None
        k = len(self.labels)
        confusion = np.zeros((k, k))
        for gold, pred in zip(self.gold, self.probabilities.argmax(axis=1), strict=True):
            confusion[gold, pred] += 1
        for row in range(k):  # a class absent from the held-out rows: assume it is recognised
            confusion[row] = (
                confusion[row] / confusion[row].sum() if confusion[row].sum() else (np.eye(k)[row])
            )
        prior = np.array([label_counts.get(label, 0) for label in self.labels], dtype=float)
        return dict(zip(self.labels, (prior @ confusion).tolist(), strict=True))

    def to_json(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "datasets": list(self.datasets),
            "labels": list(self.labels),
            "split": self.split,
            "created_at": self.created_at,
            "gold": self.gold,
            "probabilities": [[round(float(p), 6) for p in row] for row in self.probabilities],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReferencePredictions:
        return cls(
            model_uri=data["model_uri"],
            model_version=data.get("model_version"),
            datasets=tuple(data["datasets"]),
            labels=tuple(data["labels"]),
            probabilities=np.asarray(data["probabilities"], dtype=np.float32).reshape(
                -1, len(data["labels"])
            ),
            gold=data.get("gold"),
            split=data.get("split", HOLDOUT_SPLIT),
            created_at=data.get("created_at", ""),
        )


@dataclass
class Reference:
    """Everything the checks compare the current window with."""

    datasets: tuple[str, ...]
    claims: list[str]  # training sample for the domain classifier
    evidences: list[str]
    claim_lengths: np.ndarray  # every training row
    evidence_lengths: np.ndarray
    claim_vocabulary: set[str]
    evidence_vocabulary: set[str]
    holdout_claims: list[str]
    holdout_evidences: list[str]
    label_counts: dict[str, int]  # gold labels of the training data
    predictions: ReferencePredictions | None = None
    note: str = ""

    def describe(self) -> dict[str, Any]:
        preds = self.predictions
        return {
            "datasets": list(self.datasets),
            "training_rows": int(len(self.claim_lengths)),
            "text_sample_rows": len(self.claims),
            "holdout_rows": len(self.holdout_claims),
            "model_uri": preds.model_uri if preds else None,
            "model_version": preds.model_version if preds else None,
            "prediction_rows": int(len(preds.probabilities)) if preds else 0,
            **({"note": self.note} if self.note else {}),
        }


def build_reference(
    train: Sequence[Example],
    holdout: Sequence[Example],
    sample_size: int,
    seed: int = 0,
    datasets: Sequence[str] = (),
    predictions: ReferencePredictions | None = None,
    note: str = "",
) -> Reference:
    """A :class:`Reference` from training and held-out examples (texts sampled by ``seed``)."""
    sample = shuffled(train, seed)[:sample_size]
    held = shuffled(holdout, seed)[:sample_size]
    counts = Counter(LABELS[ex.label] for ex in train)
    return Reference(
        datasets=tuple(datasets),
        claims=[ex.claim for ex in sample],
        evidences=[ex.evidence for ex in sample],
        claim_lengths=token_lengths([ex.claim for ex in train]),
        evidence_lengths=token_lengths([ex.evidence for ex in train]),
        claim_vocabulary=vocabulary([ex.claim for ex in train]),
        evidence_vocabulary=vocabulary(list(dict.fromkeys(ex.evidence for ex in train))),
        holdout_claims=[ex.claim for ex in held],
        holdout_evidences=[ex.evidence for ex in held],
        label_counts={label: counts.get(label, 0) for label in LABELS},
        predictions=predictions,
        note=note,
    )


def holdout_examples(settings: Settings, datasets: Sequence[str]) -> list[Example]:
    """The held-out reference sample: the dev split, seeded, up to ``reference_sample_size``."""
    rows = read_splits(settings.data_dir, datasets, HOLDOUT_SPLIT)
    return shuffled(rows, settings.drift.seed)[: settings.drift.reference_sample_size]


def load_reference(
    settings: Settings,
    datasets: Sequence[str] | None = None,
    predictions: ReferencePredictions | None = None,
    note: str = "",
) -> Reference:
    """The reference for ``datasets`` (default: the training datasets in settings).

    Raises:
        DataFileError: a dataset file is missing or corrupt.
    """
    names = tuple(datasets or settings.train.datasets)
    train = read_splits(settings.data_dir, names, TRAIN_SPLIT)
    held = holdout_examples(settings, names)
    return build_reference(
        train,
        held,
        settings.drift.reference_sample_size,
        settings.drift.seed,
        names,
        predictions,
        note,
    )


# ---- stored reference predictions -------------------------------------------------------


def default_model_uri(settings: Settings) -> str:
    return settings.drift.reference_model_uri or alias_uri(settings)


def predictions_path(settings: Settings, key: str, datasets: Sequence[str]) -> Path:
    """Where the predictions of the model ``key`` (a version or a URI) are stored."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")
    return settings.home / "drift" / "reference" / f"{safe}__{'+'.join(datasets)}.json"


def compute_reference_predictions(
    settings: Settings, model_uri: str, datasets: Sequence[str]
) -> ReferencePredictions:
    """Score the held-out reference sample with the model (the shared inference path).

    Raises:
        ModelLoadError: the model cannot be resolved or loaded.
    """

    verifier = load_verifier(model_uri, settings, runtime=settings.serve.runtime)  # as served
    held = holdout_examples(settings, datasets)
    probs = verifier.predict_proba([ex.claim for ex in held], [ex.evidence for ex in held])
    return ReferencePredictions(
        model_uri=model_uri,
        model_version=verifier.model_version,
        datasets=tuple(datasets),
        labels=tuple(verifier.labels),
        probabilities=np.asarray(probs, dtype=np.float32),
        gold=[ex.label for ex in held],
    )


def save_reference_predictions(preds: ReferencePredictions, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(preds.to_json()))
    tmp.replace(path)
    return path


def reference_predictions(
    settings: Settings, model_uri: str | None, datasets: Sequence[str]
) -> tuple[ReferencePredictions | None, str]:
    """The stored predictions of ``model_uri`` (computed and stored on first use).

    Returns ``(None, reason)`` when the model cannot be loaded, so that prediction checks
    report "no reference predictions" instead of failing the run.
    """

    uri = model_uri or default_model_uri(settings)
    try:
        version = resolve_version(uri, settings)
    except Exception as error:  # an unknown alias or name in the registry
        return None, f"no reference predictions: model {uri} not found ({_first_line(error)})"
    key = f"v{version}" if version else uri
    path = predictions_path(settings, key, datasets)
    if path.is_file():
        return ReferencePredictions.from_json(json.loads(path.read_text())), f"stored: {path}"
    try:
        preds = compute_reference_predictions(settings, uri, datasets)
    except ModelLoadError as error:
        return None, f"no reference predictions: {_first_line(error)}"
    save_reference_predictions(preds, path)
    return preds, f"computed and stored: {path}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
