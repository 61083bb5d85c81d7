"""The MLflow tracking server killed while ``citeops retrain`` runs.

A real ``mlflow server`` (SQLite backend, proxied artifacts: the production layout) is
started by the test on a free port and killed with SIGKILL at a named point of the run:

- ``before-registration``: the candidate is trained, the server dies before it is
  registered;
- ``after-registration``: the challenger is registered, the server dies before the
  validation against the champion;
- ``before-alias-move``: the candidate served and baked on the endpoint, the server dies
  before the aliases move;
- ``during-bake``: the server dies while the endpoint bakes the candidate.

Each time the command fails with one line (exit 2) within our request bound
(``mlflow.request_timeout_seconds`` x ``mlflow.request_max_retries``), ``champion`` names
the old version and the endpoint serves it, no alias points at an unbaked version, the
record is ``failed`` or ``rolled_back`` and the lock is free; once the server is back, the
same command promotes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from citeops.configs.settings import load_settings
from tests.harness import run_citeops
from tests.integration.test_retrain import (
    LENIENT_GATE,
    aliases,
    endpoints,
    env,
    live,
    register_tiny,
)
from tests.servers import RestartableServer, program

pytestmark = pytest.mark.integration
__all__ = ["env"]

REQUEST_TIMEOUT_S = 3
MAX_RETRIES = 1
FAIL_WITHIN_S = 60  # the bound of one failed step: our timeout and retries, with room


@dataclass(kw_only=True)
class MlflowServer(RestartableServer):
    """A ``mlflow server`` subprocess that a test can kill and start again (same port)."""

    home: Path

    def start(self) -> None:
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        artifacts = self.home / "server-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        argv = [program("mlflow", sys.executable), "server", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--workers", "1"]
        argv += ["--backend-store-uri", f"sqlite:///{self.home / 'server.db'}"]
        argv += ["--serve-artifacts", "--artifacts-destination", artifacts.as_uri()]
        argv += ["--default-artifact-root", "mlflow-artifacts:/"]
        with (self.home / "server.log").open("ab") as log:
            self.launch(argv, "/health", timeout=120, env=env, output=log)


@pytest.fixture
def mlflow_server(env: pytest.MonkeyPatch, citeops_env: Path) -> Iterator[MlflowServer]:
    """A real tracking server for this test, with every client of ours pointed at it and
    bounded by short request settings; killed at the end whatever happened."""
    from citeops.flows.tracking import use_mlflow

    server = MlflowServer(home=citeops_env / "mlflow-server")
    server.home.mkdir(parents=True)
    server.start()
    env.setenv("CITEOPS_MLFLOW__TRACKING_URI", server.url)
    env.setenv("CITEOPS_MLFLOW__ARTIFACT_LOCATION", "mlflow-artifacts:/citeops")
    env.setenv("CITEOPS_MLFLOW__REQUEST_TIMEOUT_SECONDS", str(REQUEST_TIMEOUT_S))
    env.setenv("CITEOPS_MLFLOW__REQUEST_MAX_RETRIES", str(MAX_RETRIES))
    env.setenv("MLFLOW_TRACKING_URI", server.url)
    env.setenv("MLFLOW_REGISTRY_URI", server.url)
    env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
    env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(MAX_RETRIES))
    for key, value in LENIENT_GATE.items():
        env.setenv(key, value)
    use_mlflow(load_settings())
    try:
        yield server
    finally:
        server.kill()


def _kill_before(
    env: pytest.MonkeyPatch, module: Any, name: str, server: MlflowServer
) -> list[float]:
    """Replace ``module.name`` by a wrapper that kills the server first; the kill times."""
    real = getattr(module, name)
    killed: list[float] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not killed:
            server.kill()
            killed.append(time.monotonic())
        return real(*args, **kwargs)

    env.setattr(module, name, wrapper)
    return killed


def _kill_during_bake(env: pytest.MonkeyPatch, server: MlflowServer) -> list[float]:
    """The bake's first poll of the endpoints kills the server (the bake goes on)."""
    from citeops.tasks.release import promote as promote_module

    return _kill_before(env, promote_module, "read_snapshot", server)


def _inject(point: str, env: pytest.MonkeyPatch, server: MlflowServer) -> list[float]:
    from citeops.tasks.release import promote as promote_module
    from citeops.tasks.train import steps as train_steps
    from citeops.tasks.validate import steps as validate_steps

    if point == "before-registration":
        return _kill_before(env, train_steps, "register_candidate", server)
    if point == "after-registration":
        return _kill_before(env, validate_steps, "validate_against_champion", server)
    if point == "before-alias-move":
        return _kill_before(env, promote_module, "move_aliases", server)
    assert point == "during-bake", point
    return _kill_during_bake(env, server)


POINTS: dict[str, str] = {
    "before-registration": "failed",
    "after-registration": "failed",
    "before-alias-move": "rolled_back",
    "during-bake": "rolled_back",
}


def _citeops(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``citeops argv`` in this process, Prefect's console handlers writing to this test's
    captured stderr (they keep the stream they were built with: an earlier test's, closed)."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.stream = sys.stderr  # not setStream: it flushes the closed one
                handler.console.file = sys.stderr
    return run_citeops(argv, capsys)


def _lock_free() -> bool:
    from citeops.tasks.store.promotions import LockHeld, hold_lock

    try:
        with hold_lock(load_settings(), wait_seconds=0):
            return True
    except LockHeld:
        return False


# One point in the fast suite (the one that exercises the rollback of live endpoints);
# the other three take a minute or more each on 2 cores and run with `-m slow`.
FAST_POINT = "before-alias-move"


@pytest.mark.parametrize(
    "point",
    [
        pytest.param(point, marks=() if point == FAST_POINT else pytest.mark.slow)
        for point in POINTS
    ],
)
def test_mlflow_server_killed_during_retrain(
    point: str,
    env: pytest.MonkeyPatch,
    mlflow_server: MlflowServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from citeops.tasks.store.promotions import list_records

    old = register_tiny("champion", favour=2)
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        with env.context() as fault:
            killed = _inject(point, fault, mlflow_server)
            capsys.readouterr()
            code, out, err = _citeops(["retrain", "--force"], capsys)
            failed_at = time.monotonic()
        assert killed, f"the run never reached {point}"
        assert failed_at - killed[0] < FAIL_WITHIN_S * (2 if point == "during-bake" else 1)
        assert code == 2, (out, err)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, err
        assert "Traceback" not in err
        assert "mlflow" in errors[0].lower(), errors[0]
        assert live(base) == old  # the endpoint is back on (or never left) the champion
        assert _lock_free()
        settings = load_settings()
        record = list_records(settings, limit=1)[0]
        assert record.outcome == POINTS[point], (record.outcome, record.detail)
        assert "\n" not in record.detail

        mlflow_server.start()
        moved = aliases(settings)
        assert moved["champion"] == old and moved["previous"] is None
        if record.version is not None:  # registered before the kill: only as challenger
            assert moved["challenger"] in (None, record.version)

        code, out, err = _citeops(["retrain", "--force"], capsys)
        assert code == 0, (out, err)
        again = list_records(settings, limit=1)[0]
        assert again.outcome == "promoted", again.detail
        assert live(base) == again.version != old
        assert aliases(settings) == {"champion": again.version, "previous": old, "challenger": None}
        assert _lock_free()
