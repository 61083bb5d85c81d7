"""The `monitor` flow under the session's Prefect test harness, and the drift CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citeops.tasks.data.multivers import read_split
from tests.code.test_drift_run import query_records, write_query_log


def stored_decision(decision_id: int) -> dict:
    """The decision row ``decision_id`` as the curated store holds it."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.store.decisions import list_decisions

    return next(d for d in list_decisions(load_settings()) if d["id"] == decision_id)


@pytest.fixture
def citint_queries(tmp_path: Path, data_dir: Path) -> Path:
    """A folder of query logs from another source than the reference (drift expected)."""
    write_query_log(tmp_path / "logs", query_records(read_split(data_dir, "citint", "dev")[:150]))
    return tmp_path / "logs"


def test_monitor_flow_records_decision_without_retrain_deployment(
    prefect_harness, citint_queries: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from citeops.flows.monitor import monitor

    state = monitor(
        current_dir=str(citint_queries),
        reference_datasets=["scifact"],
        force=True,
        ingest=False,
        return_state=True,
    )
    result = state.result()
    assert result["drift"]["drift"] is True and Path(result["drift"]["report"]).is_file()
    decision = result["decision"]
    assert decision["retrain"] is True and decision["causes"] == ["drift", "forced"]
    assert decision["deployment"]["started"] is False
    assert "no deployment of flow 'retrain'" in decision["deployment"]["reason"]
    recorded = stored_decision(decision["id"])
    assert recorded["deployment"] == decision["deployment"]
    assert recorded["mlflow_run_id"] == result["drift"]["mlflow_run_id"]
    APILogWorker.drain_all(timeout=5)
    run_logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        drift_artifacts = [a for a in artifact if a.key == "drift-report"]
        logs = client.read_logs(run_logs)
    assert drift_artifacts and "| claim_text |" in drift_artifacts[0].data
    stage_logs = {log.name for log in logs if log.name.startswith("citeops.")}  # in the UI
    assert {"citeops.tasks.drift.detect", "citeops.tasks.trigger.launch"} <= stage_logs


def test_monitor_flow_ingests_then_checks_the_stored_queries(
    prefect_harness, data_dir: Path
) -> None:
    from datetime import UTC, datetime

    from citeops.configs.settings import load_settings
    from citeops.flows.monitor import monitor

    now = datetime.now(UTC)
    rows = query_records(read_split(data_dir, "citint", "dev")[:80])
    write_query_log(
        Path(load_settings().log_root or ""),
        [{**r, "datetime": now.isoformat()} for r in rows],
        day=now.date().isoformat(),
    )
    result = monitor(reference_datasets=["scifact"])
    assert result["ingest"]["accepted"] == 80
    assert result["drift"]["window"]["source"] == "query store"
    assert result["drift"]["current_rows"] == 80 and result["drift"]["drift"] is True
    assert result["decision"]["causes"] == ["drift"]


def test_monitor_flow_starts_retrain_deployment(prefect_harness, citint_queries: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from citeops.flows.monitor import monitor

    @flow(name="retrain")
    def retrain_stub(trigger: dict | None = None) -> None:
        """Stands in for flows/retrain.py's flow: its name, deployment and parameter."""

    deployment_id = retrain_stub.to_deployment(name="drift-test").apply()
    try:
        result = monitor(
            current_dir=str(citint_queries), reference_datasets=["scifact"], ingest=False
        )
        started = result["decision"]["deployment"]
        assert started["started"] is True and started["deployment"] == "retrain/drift-test"
        recorded = stored_decision(result["decision"]["id"])
        assert recorded["deployment"]["flow_run_id"] == started["flow_run_id"]
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(started["flow_run_id"])
        assert run.parameters["trigger"]["causes"] == result["decision"]["causes"]
        assert run.deployment_id == deployment_id
        assert "trigger:drift" in run.tags
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)


def test_monitor_flow_with_configured_deployment_that_is_missing(
    prefect_harness, citint_queries: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.flows.monitor import monitor

    monkeypatch.setenv("CITEOPS_TRIGGER__RETRAIN_DEPLOYMENT", "retrain/nowhere")
    result = monitor(current_dir=str(citint_queries), reference_datasets=["scifact"], ingest=False)
    started = result["decision"]["deployment"]
    assert started["started"] is False and "'retrain/nowhere'" in started["reason"]


def test_cli_drift_and_trigger_json(
    citint_queries: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    code = run_cli(
        app,
        [
            "drift",
            "--current",
            str(citint_queries),
            "--reference-datasets",
            "scifact",
            "--no-mlflow",
            "--json",
        ],
    )
    assert code == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["drift"] is True and Path(out["report"]).is_file()
    assert {"statistic", "threshold", "drift"} <= set(out["checks"]["evidence_text"])
    assert "drift: drift on 150 queries" in captured.err  # stage logs on stderr
    code = run_cli(app, ["trigger", "--json"])
    captured = capsys.readouterr()
    decision = json.loads(captured.out)
    assert code == 0 and decision["causes"] == ["drift"]
    assert decision["inputs"]["drift_report"] == out["report"]
    assert "retrain: yes (drift found in" in captured.err
    assert run_cli(app, ["trigger", "--drift-report", str(citint_queries / "nothing.json")]) == 2
    assert "cannot read the drift summary" in capsys.readouterr().err
    assert run_cli(app, ["drift", "--current", str(citint_queries / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert run_cli(app, ["drift", "--since", "yesterday"]) == 2
    assert "'yesterday' is not an ISO date" in capsys.readouterr().err
