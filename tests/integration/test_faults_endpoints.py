"""One of two serving endpoints dies while a promotion bakes.

Two real uvicorn endpoints serve the champion; ``citeops promote`` switches both to the
new version and, at the named point (the bake's start), endpoint two stops answering. All
or nothing holds: the survivor is rolled back, the command fails with one line (exit 2),
the record is ``rolled_back`` and the aliases have not moved; endpoint two, started again,
loads the champion, so no two versions are live; the same command then promotes both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from citeops.configs.settings import load_settings
from tests.conftest import free_port, wait_for_http
from tests.integration.test_faults_mlflow import _citeops
from tests.integration.test_retrain import TOKEN, aliases, env, live, register_tiny

pytestmark = pytest.mark.integration
__all__ = ["env"]


@dataclass
class Endpoint:
    """A serving endpoint under uvicorn in a thread, that a test can stop (its port then
    refuses connections, as a dead replica's does)."""

    port: int
    server: Any = None
    thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, model_uri: str) -> None:
        import uvicorn

        from citeops.serving.app import create_app

        app = create_app(load_settings(admin_token=TOKEN), model_uri)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for_http(f"{self.base}/ready", timeout=60)  # 503 until the model is loaded

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            assert self.thread is not None
            self.thread.join(30)
        self.server = None


@contextmanager
def two_endpoints(monkeypatch: pytest.MonkeyPatch, model_uri: str) -> Iterator[list[Endpoint]]:
    pair = [Endpoint(free_port()), Endpoint(free_port())]
    try:
        for endpoint in pair:
            endpoint.start(model_uri)
        urls = ",".join(f'"{e.base}"' for e in pair)
        monkeypatch.setenv("CITEOPS_PROMOTE__ENDPOINTS", f"[{urls}]")
        yield pair
    finally:
        for endpoint in pair:
            endpoint.stop()


def test_endpoint_killed_during_the_bake_rolls_the_survivor_back(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from citeops.tasks.release import promote as promote_module
    from citeops.tasks.store.promotions import list_records

    env.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "3")
    old = register_tiny("champion", seed=0)
    new = register_tiny(None, seed=1)
    with two_endpoints(env, f"models:/claim-verifier/{old}") as (one, two):
        real_bake = promote_module.bake
        seen: list[str] = []

        def bake_while_two_dies(*args: Any, **kwargs: Any) -> Any:
            seen.extend(live(e.base) for e in (one, two))
            two.stop()
            return real_bake(*args, **kwargs)

        with env.context() as fault:
            fault.setattr(promote_module, "bake", bake_while_two_dies)
            code, out, err = _citeops(["promote", "--version", new, "--skip-gate"], capsys)
        assert seen == [new, new]  # both had switched when two died
        assert code == 2, (out, err)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "rolled back" in errors[0], err
        assert "Traceback" not in err
        assert live(one.base) == old  # the survivor is back on the champion
        settings = load_settings()
        assert aliases(settings) == {"champion": old, "previous": None, "challenger": None}
        record = list_records(settings, limit=1)[0]
        assert record.outcome == "rolled_back", record.detail
        assert two.base in record.detail

        two.start(f"models:/claim-verifier@{'champion'}")  # a replica restarts on champion
        assert {live(one.base), live(two.base)} == {old}  # never two versions live

        code, out, err = _citeops(["promote", "--version", new, "--skip-gate"], capsys)
        assert code == 0, (out, err)
        assert {live(one.base), live(two.base)} == {new}
        assert aliases(settings) == {"champion": new, "previous": old, "challenger": None}
        assert list_records(settings, limit=1)[0].outcome == "promoted"
