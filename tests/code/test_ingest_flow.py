"""The `ingest-feedback` Prefect flow under the session's test harness."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from tests.ingest_support import feedback_line, query_line, store_snapshot, write_part


def flow_run_messages(flow_run_id: UUID) -> list[str]:
    """The messages the Prefect API holds for a flow run (its tasks' included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def test_flow_matches_the_cli_pipeline_and_publishes_its_report(
    prefect_harness: None, citeops_env: Path, tmp_path: Path, monkeypatch
) -> None:
    from citeops.configs.settings import load_settings
    from citeops.flows.ingest import ingest_feedback
    from citeops.tasks.ingest.pipeline import ingest

    lines = [feedback_line(), feedback_line(user_label="NEI"), feedback_line(), "{oops"]
    root = citeops_env / "logs"
    write_part(root, "feedback", "2026-01-05", "a.jsonl", lines)
    write_part(root, "queries", "2026-01-05", "q.jsonl", [query_line(1), query_line(1)])

    monkeypatch.setenv("CITEOPS_INGEST__PROGRESS_EVERY_LINES", "1")
    state = ingest_feedback(return_state=True)
    report = state.result()
    assert report == {
        "objects": 2,
        "lines": 6,
        "accepted": 2,
        "duplicates": 2,
        "conflicts": 1,
        "quarantined": 1,
        "leaked": 0,
        "reasons": {"bad_json": 1},
        "new_feedback_since_last_training": 0,  # the only pair is in conflict
    }
    from prefect.artifacts import Artifact

    artifact = Artifact.get("ingest-feedback-report")
    assert artifact is not None and "| lines | 6 |" in artifact.data
    assert "| bad_json | 1 |" in artifact.data
    messages = flow_run_messages(state.state_details.flow_run_id)
    assert "ingest: 4 lines read, 0/2 objects stored" in messages  # the stage's own logger
    assert ingest_feedback()["objects"] == 0
    flow_state = store_snapshot(load_settings())

    monkeypatch.setenv("CITEOPS_HOME", str(tmp_path / "other-home"))
    assert ingest(load_settings(), source=str(root)).to_dict() == report
    assert store_snapshot(load_settings()) == flow_state
