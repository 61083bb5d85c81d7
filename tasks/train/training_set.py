"""The retrain flow's first stage: what a candidate is trained and validated on.

Benchmark train splits plus accepted, non-leaked, resolved curated feedback that the
feedback-quality stage did not flag (unless ``feedback.use_flagged``), minus a
deterministic feedback hold-out: a feedback example is held out when a hash of its
normalised claim falls in the first ``retrain.holdout_share`` of the hash range, so the
same claim is always on the same side (its paraphrases by case or spacing too), run after
run, and the hold-out grows as feedback grows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from citeops.tasks.data.multivers import (
    LABELS,
    Example,
    claims_file,
    corpus_file,
    files_digest,
    label_counts,
    normalise_claim,
    read_splits,
    shuffled,
)
from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

log = logging.getLogger(__name__)

FEEDBACK_DATASET = "feedback"  # the dataset name of curated feedback examples


class TrainingError(CiteopsError):
    """Training cannot start or did not produce a model (e.g. no training examples)."""


def in_holdout(claim: str, share: float) -> bool:
    """True when the claim belongs to the feedback hold-out (stable across runs)."""
    if share <= 0:
        return False
    digest = hashlib.sha256(normalise_claim(claim).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def rows_digest(rows: Sequence[Example]) -> str:
    """SHA-256 over the examples' text and labels, in order: a version of data without files."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.claim}\x1f{row.evidence}\x1f{row.label}\x1e".encode())
    return digest.hexdigest()


@dataclass
class TrainingSet:
    """Train, dev and feedback hold-out examples, with digests of where they came from."""

    train: list[Example]
    dev: list[Example]
    holdout: list[Example]
    digests: dict[str, str] = field(default_factory=dict)  # source -> SHA-256
    cutoff: datetime = field(default_factory=lambda: datetime.now(UTC))  # feedback read up to
    # stored feedback rows not used, by reason (leaked, flagged, flagged_<reason>,
    # excluded_client, conflict); empty when feedback was not included
    feedback_left_out: dict[str, int] = field(default_factory=dict)

    @property
    def feedback_examples(self) -> int:
        return sum(ex.dataset == FEEDBACK_DATASET for ex in self.train)

    def counts(self) -> list[dict[str, Any]]:
        """One row per (source, part): examples and label counts."""
        rows = []
        for part, examples in (("train", self.train), ("dev", self.dev), ("holdout", self.holdout)):
            for source in sorted({ex.dataset for ex in examples}):
                chosen = [ex for ex in examples if ex.dataset == source]
                rows.append(
                    {"source": source, "part": part, "examples": len(chosen)} | label_counts(chosen)
                )
        return rows

    def summary(self) -> dict[str, Any]:
        """JSON-able: the counts table and the digests (what the promotion record keeps)."""
        return {
            "train_examples": len(self.train),
            "dev_examples": len(self.dev),
            "holdout_examples": len(self.holdout),
            "feedback_examples": self.feedback_examples,
            "feedback_left_out": dict(self.feedback_left_out),
            "counts": self.counts(),
            "digests": dict(self.digests),
        }

    def markdown(self) -> str:
        """The counts and digests as a markdown table (a Prefect artifact)."""
        head = "| source | part | examples | " + " | ".join(LABELS) + " |"
        lines = [head, "|" + " --- |" * (3 + len(LABELS))]
        for row in self.counts():
            labels = " | ".join(str(row.get(label, 0)) for label in LABELS)
            lines.append(f"| {row['source']} | {row['part']} | {row['examples']} | {labels} |")
        lines += ["", "| source | SHA-256 |", "| --- | --- |"]
        lines += [f"| {name} | `{digest[:16]}` |" for name, digest in sorted(self.digests.items())]
        if self.feedback_left_out:
            lines += ["", "| feedback left out | rows |", "| --- | --- |"]
            lines += [f"| {why} | {n} |" for why, n in sorted(self.feedback_left_out.items())]
        return "\n".join(lines)

    def left_out_params(self) -> dict[str, int]:
        """``feedback_left_out_<reason>``: MLflow parameters of the training run."""
        return {f"feedback_left_out_{why}": n for why, n in sorted(self.feedback_left_out.items())}


def split_feedback(
    feedback: Sequence[Example], share: float
) -> tuple[list[Example], list[Example]]:
    """``(for training, held out)`` by the claim hash."""
    train, holdout = [], []
    for ex in feedback:
        (holdout if in_holdout(ex.claim, share) else train).append(ex)
    return train, holdout


def build_training_set(settings: Settings) -> TrainingSet:
    """Benchmark train / dev splits of ``train.datasets`` plus curated feedback (when
    ``train.include_feedback``) minus its hold-out; shuffled by the seed, then capped by
    ``train.max_examples`` / ``train.max_eval_examples``.

    Raises:
        DataFileError: a dataset file is missing or corrupt.
        TrainingError: the cap leaves no training example.
    """
    cfg = settings.train
    cutoff = datetime.now(UTC)
    train = read_splits(settings.data_dir, cfg.datasets, "train", seed=cfg.seed)
    dev = read_splits(settings.data_dir, cfg.datasets, "dev", seed=cfg.seed)
    digests = {
        f"{name}-{split}": files_digest(
            [corpus_file(settings.data_dir, name), claims_file(settings.data_dir, name, split)]
        )
        for name in cfg.datasets
        for split in ("train", "dev")
    }
    holdout: list[Example] = []
    left_out: dict[str, int] = {}
    if cfg.include_feedback:
        from citeops.tasks.store.queries import training_feedback_with_left_out

        usable, left_out = training_feedback_with_left_out(settings)
        feedback, holdout = split_feedback(usable, settings.retrain.holdout_share)
        if feedback:
            train = shuffled(train + feedback, cfg.seed)
        digests["feedback-train"] = rows_digest(feedback)
        digests["feedback-holdout"] = rows_digest(holdout)
    if cfg.max_examples:
        train = train[: cfg.max_examples]
    if cfg.max_eval_examples:
        dev = dev[: cfg.max_eval_examples]
    if not train:
        raise TrainingError(f"no training examples in {settings.data_dir} for {cfg.datasets}")
    data = TrainingSet(train, dev, holdout, digests, cutoff, left_out)
    log.info(
        "training set: %d train (%d feedback), %d dev, %d feedback held out; "
        "feedback rows left out: %s",
        len(train),
        data.feedback_examples,
        len(dev),
        len(holdout),
        ", ".join(f"{why} {n}" for why, n in left_out.items() if n) or "none",
    )
    return data
