"""Faults during a promotion, against real uvicorn endpoints and a real MLflow store.

A promotion ends either fully promoted (endpoints, aliases and record agree) or fully
rolled back (endpoints on the old champion, aliases untouched, the record says why):
these tests break a part at a named point and check what is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from tests.integration.test_retrain import aliases, endpoints, env, live, register_tiny

pytestmark = pytest.mark.integration
__all__ = ["env"]  # the fixture, shared with test_retrain


def _sqlite_file(uri: str) -> Path:
    assert uri.startswith("sqlite:///"), uri
    return Path(uri[len("sqlite:///") :])


def test_alias_move_failure_after_the_swap_rolls_the_endpoints_back(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The MLflow store turns unwritable once the endpoint serves the new version (the
    sqlite file replaced by a folder): the command exits 2 with one line, the endpoint
    serves the old champion again, aliases and record agree with it."""
    from citeops.flows.cli import main
    from citeops.tasks.release import promote as promote_module
    from citeops.tasks.store.promotions import list_records

    settings = load_settings()
    old = register_tiny("champion", seed=0)
    new = register_tiny(None, seed=1)
    store = _sqlite_file(str(settings.mlflow.tracking_uri))
    moved = store.with_name("moved-away.db")
    real_bake = promote_module.bake
    seen_live: list[str] = []

    def bake_then_break_the_store(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        figures = real_bake(*args, **kwargs)
        seen_live.extend(live(base) for base in args[2])
        store.rename(moved)
        store.mkdir()
        return figures

    env.setattr(promote_module, "bake", bake_then_break_the_store)
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["promote", "--version", new, "--skip-gate"])
        err = capsys.readouterr().err
        assert seen_live == [new]  # the swap did happen before the store broke
        assert done.value.code == 2
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "alias" in errors[0], err
        assert "Traceback" not in err, err
        assert live(base) == old
    store.rmdir()
    moved.rename(store)
    assert aliases(settings) == {"champion": old, "previous": None, "challenger": None}
    (record,) = list_records(settings)
    assert record.outcome == "rolled_back", record.detail
    assert "alias" in record.detail and "rolled back" in record.detail


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from citeops.flows.cli import main; main()", *args]


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(0.2)


def test_kill_9_during_the_bake_is_reconciled_by_the_next_command(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``citeops promote`` killed with SIGKILL while it bakes: its temporary Prefect API
    server dies with it; the next lifecycle command (here ``history``) closes the record as
    ``abandoned`` and puts the endpoint back on the champion."""
    import psutil

    from citeops.flows.cli import main
    from citeops.tasks.store.promotions import list_records

    env.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "300")
    env.delenv("PREFECT_API_URL", raising=False)  # the CLI starts its temporary server
    settings = load_settings()
    old = register_tiny("champion", seed=0)
    new = register_tiny(None, seed=1)
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        promote = subprocess.Popen(
            _cli("promote", "--version", new, "--skip-gate"),
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for(lambda: live(base) == new, 240, "the new version not live")
            children = psutil.Process(promote.pid).children(recursive=True)
            assert any("uvicorn" in " ".join(c.cmdline()) for c in children), children
            assert [r.outcome for r in list_records(settings)] == ["running"]
            promote.send_signal(signal.SIGKILL)
            promote.wait(10)
        finally:
            if promote.poll() is None:
                promote.kill()
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"children left running: {alive}"

        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["history"])
        assert done.value.code == 0
        assert live(base) == old
    (record,) = list_records(settings)
    assert record.outcome == "abandoned" and str(promote.pid) in record.detail
    assert "abandoned" in capsys.readouterr().out
    assert aliases(settings)["champion"] == old
