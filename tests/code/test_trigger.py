"""The retraining trigger: its three causes, their reasons, and the record it leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.trigger import count_feedback_lines, decide, should_retrain


@pytest.mark.parametrize(
    ("feedback", "drift", "force", "causes"),
    [
        (150, False, False, ["feedback"]),
        (3, True, False, ["drift"]),
        (3, False, True, ["forced"]),
        (100, True, True, ["feedback", "drift", "forced"]),
        (99, False, False, []),
        (None, None, False, []),
    ],
)
def test_decide_causes_and_reasons(feedback, drift, force, causes) -> None:
    decision = decide(feedback, 100, drift, force, {"drifted_checks": ["claim_text"]})
    assert decision.retrain is bool(causes) and decision.causes == causes
    text = " ".join(decision.reasons)
    if "feedback" in causes:
        assert f"{feedback} accepted new feedback" in text and "threshold 100" in text
    if "drift" in causes:
        assert "drift found in claim_text" in text
    if "forced" in causes:
        assert "forced" in text
    if not causes:
        assert text.startswith("no cause fired")
        assert (
            "feedback count unknown" if feedback is None else f"{feedback} new feedback < 100"
        ) in text


def test_should_retrain_records_decision_and_inputs() -> None:
    settings = load_settings()
    since = datetime(2026, 1, 1, tzinfo=UTC)
    summary = {"drift": True, "status": "drift", "report": "/r.html", "drifted_checks": ["x"]}
    first = should_retrain(settings, drift=summary, new_feedback=12, since=since)
    second = should_retrain(settings, force=True, drift=False, new_feedback=120, since=since)
    assert first.causes == ["drift"] and second.causes == ["feedback", "forced"]
    assert first.inputs["drift_report"] == "/r.html" and first.inputs["since"] == since.isoformat()
    log = Path(first.record)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["causes"] for line in lines] == [["drift"], ["feedback", "forced"]]
    latest = json.loads((log.parent / "latest.json").read_text())
    assert latest["inputs"]["new_feedback"] == 120 and latest["retrain"] is True


def test_should_retrain_gathers_feedback_count() -> None:
    decision = should_retrain(load_settings(), record=False)
    assert isinstance(decision.inputs["new_feedback"], int)
    assert decision.inputs["feedback_source"]
    assert decision.retrain is False and decision.record is None


def test_feedback_folder_count_is_distinct_valid_lines(tmp_path: Path) -> None:
    good = {
        "claim": "c",
        "evidence": "e",
        "user_label": "SUPPORT",
        "datetime": "2026-11-20T10:00:00Z",
    }
    lines = [
        good,
        good,  # a duplicate
        {**good, "user_label": "REFUTE"},
        {**good, "user_label": "MAYBE"},  # not a label
        {**good, "claim": "old", "datetime": "2026-01-01T00:00:00Z"},
    ]
    folder = tmp_path / "date=2026-11-20"
    folder.mkdir()
    (folder / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "junk\n")
    (folder / "p.jsonl.tmp").write_text(json.dumps({**good, "claim": "partial"}) + "\n")
    assert count_feedback_lines(tmp_path, datetime(2026, 11, 1, tzinfo=UTC)) == 2
    assert count_feedback_lines(tmp_path, None) == 3
