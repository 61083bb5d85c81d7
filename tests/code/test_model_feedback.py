"""Accepted curated feedback joins the training data, and training marks the store."""

from __future__ import annotations

from pathlib import Path

from citeops.configs.settings import load_settings
from citeops.tasks.ingest.pipeline import ingest
from citeops.tasks.store.queries import last_training_time, new_feedback_since_last_training
from citeops.tasks.store.schema import open_store
from citeops.tasks.train.fit import load_training_data
from citeops.tasks.train.training_set import FEEDBACK_DATASET
from tests.ingest_support import feedback_line, write_part


def _ingest_three(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    lines = [
        feedback_line(claim=f"Feedback claim {i} about vitamin D.", user_label=label)
        for i, label in enumerate(["SUPPORT", "REFUTE", "NEI"])
    ]
    write_part(root, "feedback", "2026-01-05", "part-0.jsonl", lines)
    report = ingest(load_settings(), source=str(root))
    assert report.to_dict()["accepted"] == 3


def test_feedback_joins_training_data(tmp_path: Path) -> None:
    _ingest_three(tmp_path)
    settings = load_settings(train={"max_examples": 100_000}, retrain={"holdout_share": 0.0})
    train, _ = load_training_data(settings)
    from_feedback = [ex for ex in train if ex.dataset == FEEDBACK_DATASET]
    assert sorted(ex.label_name for ex in from_feedback) == ["NEI", "REFUTE", "SUPPORT"]
    assert train[-3:] != from_feedback  # shuffled in, not appended

    without = load_settings(
        train={"max_examples": 100_000, "include_feedback": False}, retrain={"holdout_share": 0.0}
    )
    assert len(load_training_data(without)[0]) == len(train) - 3


def test_training_marks_the_store(tmp_path: Path) -> None:
    from citeops.tasks.train.fit import train_model

    _ingest_three(tmp_path)
    settings = load_settings(train={"max_examples": 16, "max_eval_examples": 8})
    with open_store(settings) as engine:
        assert new_feedback_since_last_training(engine) == 3
    assert last_training_time(settings) is None
    train_model(settings, progress=False)
    assert last_training_time(settings) is not None
    with open_store(settings) as engine:
        assert new_feedback_since_last_training(engine) == 0
