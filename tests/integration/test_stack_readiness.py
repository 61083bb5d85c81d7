"""`citeops up` / `status` report the serving endpoint's readiness, not its liveness: with
no champion the real `citeops serve` process is alive (/health 200) but serves nothing
(/ready 503), and both commands say so and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.stack.stack import stack_down, stack_status, stack_up
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_up_and_status_say_not_ready_without_a_champion(
    citeops_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITEOPS_SERVE__PORT", str(free_port()))
    # the endpoint loads torch and makes the MLflow store first: slow on a busy machine
    monkeypatch.setenv("CITEOPS_STACK__HEALTH_TIMEOUT_SECONDS", "400")
    settings = load_settings()
    notes: list[str] = []
    try:
        states = stack_up(settings, only=["serving"], note=notes.append)
        (serving,) = states
        log = Path(serving.log).read_text()[-3000:] if serving.log else ""
        assert serving.state == "not ready", f"{serving}\n{log}"
        assert "champion" in serving.note and "citeops promote" in serving.note
        assert any("NOT READY" in line for line in notes), notes
        assert not any("healthy" in line for line in notes), notes

        (status,) = [s for s in stack_status(settings) if s.name == "serving"]
        assert status.state == "running, not ready"
        assert "champion" in status.note and "citeops promote" in status.note

        from citeops.flows.cli import main

        with pytest.raises(SystemExit):
            main(["status", "--json"])
        listed = json.loads(capsys.readouterr().out)["services"]
        assert {s["name"]: s["state"] for s in listed}["serving"] == "running, not ready"
    finally:
        stack_down(settings)
