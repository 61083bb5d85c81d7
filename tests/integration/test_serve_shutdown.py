"""``citeops serve`` stops on the first SIGTERM even while slow clients hold requests open.

Fifty connections send their headers (with a Content-Length) and then trickle the body a
byte at a time, so each holds a request in flight for minutes. Uvicorn's graceful
shutdown waits for in-flight requests without a bound of its own; the endpoint bounds it
with ``serve.shutdown_timeout_seconds``, then cancels them and publishes its open log
parts. The process must be gone within the timeout plus a margin, with every query and
feedback line it acknowledged in a published part.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wait_for_http
from tests.integration.serve_support import save_tiny_model

pytestmark = pytest.mark.integration
SHUTDOWN_TIMEOUT_S = 2
MARGIN_S = 25  # interpreter teardown and the log parts' publication on a busy machine
SLOW_CLIENTS = 50
PAIR = {
    "claim": "Aspirin reduces the risk of colorectal cancer.",
    "evidence": "Daily aspirin use was associated with fewer colorectal cancers.",
}


def _published(root: Path, stream: str) -> list[dict[str, Any]]:
    """Lines of published parts only (what a reader of the log root sees)."""
    rows = []
    for path in sorted((root / stream).rglob("*.jsonl")):
        if not path.name.startswith("."):
            rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


class SlowBodies:
    """``count`` connections, each with a POST /predict whose body never finishes: the
    headers promise 100 kB, one byte goes out every half second until :meth:`stop`."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets: list[socket.socket] = []
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n{"
        )
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head.encode())
            self.sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.5):
            for sock in list(self.sockets):
                try:
                    sock.sendall(b" ")
                except OSError:  # the server closed it
                    self.sockets.remove(sock)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def test_sigterm_stops_serve_within_the_shutdown_timeout_despite_slow_bodies(
    citeops_env: Path, tmp_path: Path
) -> None:
    model = save_tiny_model(tmp_path / "model")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CITEOPS_SERVE__SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_S),
        "CITEOPS_SERVE__PRECISION": "fp32",
        "CITEOPS_SERVE__LOG_PART_MAX_SECONDS": "3600",  # only the shutdown publishes
    }
    cli = [
        sys.executable,
        "-c",
        "import sys; from citeops.flows.cli import main; main(sys.argv[1:])",
    ]
    with (tmp_path / "serve.out").open("w") as out:
        proc = subprocess.Popen(
            [*cli, "serve", "--model-uri", str(model), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    slow: SlowBodies | None = None
    try:
        wait_for_http(base + "/ready", timeout=120)
        request_ids = [
            httpx.post(base + "/predict", json=PAIR, timeout=30).json()["request_id"]
            for _ in range(3)
        ]
        feedback = httpx.post(
            base + "/feedback", json={**PAIR, "user_label": "SUPPORT"}, timeout=30
        )
        assert feedback.status_code == 202, feedback.text
        slow = SlowBodies(port, SLOW_CLIENTS)
        time.sleep(1.0)  # every request in flight, bodies trickling
        assert len(slow.sockets) == SLOW_CLIENTS
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S + MARGIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"citeops serve still running {SHUTDOWN_TIMEOUT_S + MARGIN_S} s after SIGTERM "
                f"with {SLOW_CLIENTS} slow-body connections"
            )
        took = time.monotonic() - signalled
    finally:
        if slow is not None:
            slow.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    log = (tmp_path / "serve.out").read_text()
    assert code in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal it handled
    assert "Traceback" not in log, log  # the cancelled requests are one line, not 50 tracebacks
    assert "timeout graceful shutdown exceeded" in log, log
    assert took >= SHUTDOWN_TIMEOUT_S - 0.5, took  # the in-flight requests had their time
    root = citeops_env / "logs"
    assert sorted(r["request_id"] for r in _published(root, "queries")) == sorted(request_ids)
    assert [r["feedback_id"] for r in _published(root, "feedback")] == [feedback.json()["id"]]
    assert not list(root.rglob(".*.tmp")), "an open part was left unpublished"
