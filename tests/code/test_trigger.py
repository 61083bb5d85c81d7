"""The retraining trigger: its three causes, their reasons, and the record it leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.flows.cli import app
from citeops.flows.cli.common import run_cli
from citeops.tasks.store.decisions import list_decisions
from citeops.tasks.store.queries import mark_training
from citeops.tasks.trigger.decision import RetrainLaunch, decide, should_retrain
from tests.ingest_support import feedback_line, write_part


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
        assert f"{feedback} trusted new feedback" in text and "threshold 100" in text
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
    assert first.record == f"curated store, retrain decision #{first.id}"
    stored = list_decisions(settings)  # newest first
    assert [d["causes"] for d in stored] == [["feedback", "forced"], ["drift"]]
    assert [d["id"] for d in stored] == [second.id, first.id]
    assert stored[0]["inputs"]["new_feedback"] == 120 and stored[0]["retrain"] is True
    assert stored[1]["inputs"]["since"] == since.isoformat()
    assert stored[1]["decided_at"] == first.decided_at


def test_should_retrain_gathers_feedback_count() -> None:
    decision = should_retrain(load_settings(), record=False)
    assert isinstance(decision.inputs["new_feedback"], int)
    assert decision.inputs["feedback_source"]
    assert decision.retrain is False and decision.record is None


def test_feedback_count_is_accepted_store_feedback_since_last_training(
    citeops_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    lines = [
        feedback_line(claim=f"Claim {i} about aspirin.", user_label=label)
        for i, label in enumerate(["SUPPORT", "REFUTE", "NEI"])
    ]
    lines += [lines[0], feedback_line(user_label="MAYBE")]  # a duplicate, a quarantined line
    write_part(Path(settings.log_root or ""), "feedback", "2026-01-05", "a.jsonl", lines)
    assert run_cli(app, ["ingest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 3
    before = should_retrain(settings, record=False)
    assert before.inputs["new_feedback"] == 3 and before.inputs["since"] is None
    assert before.inputs["feedback_source"] == "curated store"
    marked = datetime.now(UTC)
    mark_training(settings, at=marked)
    after = should_retrain(settings, record=False)
    assert after.inputs["new_feedback"] == 0
    assert after.inputs["since"] == marked.isoformat()


def test_decision_record_keeps_the_retraining_run() -> None:
    settings = load_settings()
    decision = should_retrain(settings, force=True, new_feedback=0, record=False)
    decision.deployment = RetrainLaunch(True, deployment="retrain/daily", flow_run_id="abc")
    from citeops.tasks.trigger.decision import record_decision

    decision_id = record_decision(decision, settings)
    latest = list_decisions(settings, limit=1)[0]
    assert latest["id"] == decision_id == decision.id
    assert latest["deployment"] == {
        "started": True,
        "deployment": "retrain/daily",
        "flow_run_id": "abc",
        "reason": None,
        "pending": False,
    }
