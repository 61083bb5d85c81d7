"""The Prefect API unavailable when ``monitor`` starts ``retrain/on-demand``.

The fault is injected at a named point: the trigger's look-up of the retraining
deployment (:func:`citeops.tasks.trigger.launch.find_retrain_deployment`) talks to a
Prefect API URL where nothing listens (the client's own retries off), for every try of the
``start-retraining`` task. The monitor run still ends, with the decision recorded and its
launch ``pending``; the next monitor run starts the retraining for it, and the run after
that has nothing left to retry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from tests.code.test_drift_flow import citint_queries
from tests.conftest import free_port

pytestmark = pytest.mark.integration
__all__ = ["citint_queries"]


def test_prefect_api_down_keeps_the_decision_and_the_next_monitor_starts_it(
    prefect_harness, citint_queries: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from citeops.flows.monitor import monitor
    from citeops.tasks.store.decisions import list_decisions
    from citeops.tasks.trigger import launch

    @flow(name="retrain")
    def retrain_stub(trigger: dict | None = None) -> None:
        """Stands in for flows/retrain.py's flow: its name, deployment and parameter."""

    deployment_id = retrain_stub.to_deployment(name="on-demand").apply()
    real_find = launch.find_retrain_deployment
    tries: list[int] = []

    def find_with_the_api_down(configured: str | None) -> str | None:
        """The look-up, against an API URL where nothing listens (connection refused)."""
        tries.append(1)
        dead = f"http://127.0.0.1:{free_port()}/api"
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            with SyncPrefectClient(dead) as client:
                client.read_deployments()
        return real_find(configured)  # not reached: the API is down

    args = {"current_dir": str(citint_queries), "reference_datasets": ["scifact"], "ingest": False}
    try:
        with monkeypatch.context() as fault:
            fault.setattr(launch, "find_retrain_deployment", find_with_the_api_down)
            first = monitor(force=True, **args)["decision"]
        assert len(tries) == 3  # the task's first try and its two retries
        assert first["retrain"] is True and "forced" in first["causes"]
        assert first["deployment"]["started"] is False and first["deployment"]["pending"] is True
        assert "Prefect API unavailable" in first["deployment"]["reason"]
        assert "\n" not in first["deployment"]["reason"]
        stored = {d["id"]: d for d in list_decisions(load_settings())}
        assert stored[first["id"]]["deployment"]["pending"] is True  # in the store, not lost

        second = monitor(force=False, **args)["decision"]
        assert second["retrain"] is True
        assert second["inputs"]["retried_decision"] == first["id"]
        assert "forced" in second["causes"]
        assert any(r.startswith(f"retried: decision #{first['id']}") for r in second["reasons"])
        started = second["deployment"]
        assert started["started"] is True and started["deployment"] == "retrain/on-demand"
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(started["flow_run_id"])
        assert run.deployment_id == deployment_id
        assert run.parameters["trigger"]["causes"] == second["causes"]

        third = monitor(force=False, **args)["decision"]
        assert "retried_decision" not in third["inputs"]  # started once, not again
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
