"""The retrain flow's training set: benchmarks + feedback, minus a stable feedback hold-out."""

from __future__ import annotations

from citeops.tasks.data.multivers import Example
from citeops.tasks.train.training_set import in_holdout, split_feedback


def _feedback(n: int) -> list[Example]:
    return [
        Example(f"Claim number {i} about statins.", "Evidence.", i % 3, "feedback")
        for i in range(n)
    ]


def test_holdout_share_is_close_to_the_setting() -> None:
    train, holdout = split_feedback(_feedback(2000), 0.2)
    assert len(train) + len(holdout) == 2000
    assert 0.16 < len(holdout) / 2000 < 0.24


def test_holdout_is_stable_and_ignores_case_and_spacing() -> None:
    claim = "Vitamin D lowers the risk of fractures."
    assert in_holdout(claim, 0.5) == in_holdout("  vitamin d   LOWERS the risk of fractures.", 0.5)
    first = split_feedback(_feedback(300), 0.3)[1]
    assert first == split_feedback(_feedback(300), 0.3)[1]


def test_zero_share_holds_nothing_out() -> None:
    assert split_feedback(_feedback(50), 0.0)[1] == []
