"""Feedback client ids: stored per line, counted by the trigger only when authenticated
(where credentials are required), and excluded with `citeops feedback exclude`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from citeops.configs.settings import load_settings
from citeops.tasks.ingest.pipeline import ingest
from citeops.tasks.store.queries import (
    UnknownClient,
    accepted_feedback_since,
    exclude_client,
    feedback_stats,
    training_feedback,
)
from citeops.tasks.store.schema import feedback_clients, open_store
from citeops.tasks.trigger.decision import should_retrain
from tests.ingest_support import feedback_line, write_part


@pytest.fixture
def log_root(citeops_env: Path) -> Path:
    root = citeops_env / "logs"
    root.mkdir(parents=True)
    return root


def client_rows(settings) -> dict[tuple[str, str], int]:  # noqa: ANN001
    with open_store(settings) as engine, engine.connect() as conn:
        rows = conn.execute(select(feedback_clients))
        return {(r.client_id, r.user_label): r.votes for r in rows}


def test_client_ids_are_stored_and_old_lines_without_one_still_ingest(log_root: Path) -> None:
    lines = [
        feedback_line(),  # an old line: no client_id
        feedback_line(client_id="alice"),  # duplicate of it, by alice
        feedback_line(client_id="alice", datetime="2026-01-06T10:00:00Z"),  # alice again
        feedback_line(claim="Second claim", client_id="bob"),
        feedback_line(claim="Third claim", client_id="x" * 129),  # over 128 characters
    ]
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", lines)
    settings = load_settings()
    report = ingest(settings).to_dict()
    assert (report["accepted"], report["duplicates"], report["quarantined"]) == (2, 2, 1)
    assert client_rows(settings) == {("alice", "SUPPORT"): 2, ("bob", "SUPPORT"): 1}
    stats = feedback_stats(settings)["feedback"]
    assert stats["clients"] == 2 and stats["authenticated_rows"] == 2


def test_only_authenticated_feedback_counts_toward_the_trigger_when_required(
    log_root: Path,
) -> None:
    anonymous = [feedback_line(claim=f"Anonymous claim {i}") for i in range(5)]
    signed = [feedback_line(claim=f"Signed claim {i}", client_id="app-user") for i in range(2)]
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", anonymous + signed)
    open_settings = load_settings(trigger={"min_new_feedback": 3})
    ingest(open_settings)
    assert accepted_feedback_since(open_settings, None) == 7
    assert should_retrain(open_settings, record=False).retrain is True

    required = load_settings(
        trigger={"min_new_feedback": 3},
        feedback={"require_credentials": True, "api_keys": "app:0123456789abcdef"},
    )
    assert accepted_feedback_since(required, None) == 2
    decision = should_retrain(required, record=False)
    assert decision.retrain is False and decision.inputs["new_feedback"] == 2
    assert ingest(required).to_dict()["new_feedback_since_last_training"] == 2


def test_excluding_a_client_removes_its_lines_from_training_and_the_trigger(
    log_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    honest = [feedback_line(claim=f"Honest claim {i}", client_id="alice") for i in range(3)]
    poison = [
        feedback_line(claim=f"Poison claim {i}", user_label="REFUTE", client_id="mallory")
        for i in range(4)
    ]
    # mallory also contradicts alice on one pair, and repeats one of alice's labels
    poison.append(feedback_line(claim="Honest claim 0", user_label="REFUTE", client_id="mallory"))
    poison.append(feedback_line(claim="Honest claim 1", client_id="mallory"))
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", honest + poison)
    settings = load_settings(feedback={"require_credentials": True, "token_secret": "k" * 32})
    ingest(settings)
    assert accepted_feedback_since(settings, None) == 6  # 2 clean honest + 4 poison
    assert len(training_feedback(settings)) == 6  # claim 0: same datetime, a tie, dropped

    from citeops.flows.cli import main

    with pytest.raises(SystemExit) as done:
        main(["feedback", "exclude", "--client", "mallory", "--json"])
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "client_id": "mallory",
        "lines": 6,
        "rows": 6,
        "rows_unused": 5,  # the repeated label keeps alice's vote
        "already_excluded": False,
    }
    claims = sorted((e.claim, e.label_name) for e in training_feedback(settings))
    assert claims == [(f"Honest claim {i}", "SUPPORT") for i in range(3)]
    assert accepted_feedback_since(settings, None) == 2  # claim 0 is still flagged conflict
    assert feedback_stats(settings)["feedback"]["excluded_clients"] == ["mallory"]

    # lines the client sends later are ignored too; excluding again says so
    write_part(
        log_root,
        "feedback",
        "2026-01-06",
        "b.jsonl",
        [feedback_line(claim="Poison later", user_label="NEI", client_id="mallory")],
    )
    ingest(settings)
    assert "Poison later" not in {e.claim for e in training_feedback(settings)}
    again = exclude_client(settings, "mallory")
    assert again.already_excluded and again.lines == 7
    with pytest.raises(UnknownClient):
        exclude_client(settings, "  ")


def test_schema_version_three_adds_the_client_tables(citeops_env: Path) -> None:
    settings = load_settings()
    with open_store(settings) as engine, engine.connect() as conn:
        assert conn.execute(select(feedback_clients)).all() == []
