"""Replicas behind a real HAProxy: traffic through the balancer while a promotion and a
rollback run on every replica loses no request, and a replica stopped mid-traffic is taken
out by the health check (failures counted against the requests it had in flight)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.stack.balancer import (
    balancer_argv,
    haproxy_binary,
    render_config,
    write_config,
)
from tests.conftest import free_port
from tests.integration.test_retrain import TOKEN, endpoint, live, register_tiny

pytestmark = pytest.mark.integration


def needs_haproxy() -> None:
    from citeops.tasks.stack.errors import StackError

    try:
        haproxy_binary()
    except StackError as error:
        pytest.skip(str(error))


def test_the_config_checks_every_replica_and_retries_elsewhere() -> None:
    text = render_config(load_settings(), ["http://127.0.0.1:8001", "http://10.0.0.2:8002"],
                         "127.0.0.1", 8000)  # fmt: skip
    assert "bind 127.0.0.1:8000" in text
    assert "server replica1 127.0.0.1:8001 check" in text
    assert "server replica2 10.0.0.2:8002 check" in text
    assert "option httpchk GET /ready" in text and "retry-on conn-failure" in text


@contextmanager
def balancer(replicas: list[str]) -> Iterator[str]:
    """A real haproxy in front of ``replicas``; yields its base URL once it answers."""
    port = free_port()
    config = write_config(load_settings(), replicas, "127.0.0.1", port)
    proc = subprocess.Popen(balancer_argv(config), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "haproxy did not start"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


class Traffic:
    """Clients posting /predict through the balancer until stopped; counts the outcomes
    and which versions answered."""

    def __init__(self, base: str, clients: int = 4) -> None:
        self.base, self.ok, self.failed, self.versions = base, 0, [], set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        body = {
            "claim": "Aspirin lowers the risk of colorectal cancer.",
            "evidence": "Daily aspirin was associated with a lower colorectal cancer risk.",
        }
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(f"{self.base}/predict", json=body)
                    outcome = response.status_code == 200
                    version = (
                        response.json().get("model_version")
                        if outcome
                        else f"HTTP {response.status_code}: {response.text[:120]}"
                    )
                except httpx.HTTPError as error:
                    outcome, version = False, repr(error)
                with self.lock:
                    if outcome:
                        self.ok += 1
                        self.versions.add(version)
                    else:
                        self.failed.append(version or "HTTP error")

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def env(citeops_env: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CITEOPS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CITEOPS_SERVE__PRECISION", "fp32")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "1")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_POLL_SECONDS", "0.2")
    return monkeypatch


def test_promotion_and_rollback_behind_the_balancer_lose_no_request(env) -> None:
    from citeops.tasks.release.lifecycle import promote_version, rollback_last

    needs_haproxy()
    old = register_tiny("champion", favour=0)
    new = register_tiny(None, favour=2, seed=1)
    with ExitStack() as stack:
        replicas = [stack.enter_context(endpoint(f"models:/claim-verifier/{old}"))
                    for _ in range(2)]  # fmt: skip
        env.setenv("CITEOPS_PROMOTE__ENDPOINTS", "[" + ",".join(f'"{r}"' for r in replicas) + "]")
        base = stack.enter_context(balancer(replicas))
        with Traffic(base) as traffic:
            time.sleep(1.0)
            promoted = promote_version(load_settings(), new, skip_gate=True)
            assert promoted.outcome == "promoted", promoted.detail
            assert [live(r) for r in replicas] == [new, new]
            time.sleep(1.0)
            rolled = rollback_last(load_settings())
            assert rolled.outcome == "rollback"
            assert [live(r) for r in replicas] == [old, old]
            time.sleep(1.0)
        assert traffic.failed == [] and traffic.ok > 50
        assert traffic.versions == {old, new}


def test_a_stopped_replica_leaves_the_rotation(env) -> None:
    needs_haproxy()
    version = register_tiny("champion", favour=0)
    with ExitStack() as stack:
        keep = stack.enter_context(endpoint(f"models:/claim-verifier/{version}"))
        going = ExitStack()
        doomed = going.enter_context(endpoint(f"models:/claim-verifier/{version}"))
        base = stack.enter_context(balancer([keep, doomed]))
        clients = 4
        with Traffic(base, clients=clients) as traffic:
            time.sleep(1.5)
            going.close()  # uvicorn stops: in-flight requests finish, new connections fail
            time.sleep(3.0)  # more than the two failed checks that take it out
            before = traffic.ok
            time.sleep(1.5)
            assert traffic.ok > before  # the survivor answers everything now
        # at most the requests the stopped replica had in flight (one per client)
        assert len(traffic.failed) <= clients, traffic.failed


@pytest.mark.slow  # about 40 s: two `citeops serve` processes start and stop
def test_up_with_replicas_starts_them_behind_the_balancer_and_down_stops_all(env) -> None:
    from citeops.tasks.release.endpoints import serving_endpoints
    from citeops.tasks.stack.stack import stack_down, stack_status, stack_up

    needs_haproxy()
    version = register_tiny("champion", favour=0)
    port = free_port()
    while not all(_free(port + i) for i in range(3)):
        port = free_port()
    settings = load_settings(serve={"port": port}, stack={"replicas": 2})
    try:
        states = {s.name: s for s in stack_up(settings, only=["serving"])}
        assert set(states) == {"serving-1", "serving-2", "load-balancer"}, states
        replicas = [f"http://{settings.serve.host}:{port + i}" for i in (1, 2)]
        assert serving_endpoints(settings) == replicas  # what promotion deploys to
        assert [live(r) for r in replicas] == [version, version]
        through = httpx.post(f"http://{settings.serve.host}:{port}/predict", timeout=30,
                             json={"claim": "A claim.", "evidence": "Some evidence."})  # fmt: skip
        assert through.status_code == 200 and through.json()["model_version"] == version
        running = {s.name: s.state for s in stack_status(settings)}
        assert running["serving-1"] == running["serving-2"] == "running"
        assert running["load-balancer"] == "running"
    finally:
        stopped = {s.name: s.state for s in stack_down(settings)}
    assert stopped["serving-1"] == stopped["serving-2"] == stopped["load-balancer"] == "stopped"
    assert serving_endpoints(settings) == [f"http://{settings.serve.host}:{port}"]


def _free(port: int) -> bool:
    from citeops.tasks.stack.processes import port_is_free

    return port_is_free("127.0.0.1", port)
