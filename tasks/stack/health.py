"""Health checks, polled until they pass (servers take seconds: MLflow about 12 s, more
when `mlflow db upgrade` creates a fresh schema)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from citeops.tasks.redact import redact_url
from citeops.tasks.stack.errors import ServiceStartError
from citeops.tasks.stack.processes import ProcessRecord, is_alive, tail


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


STILL_LOADING = "still loading"  # what /ready says while the live model loads
NOT_READY_HINT = (
    "no model is live, so /predict answers 503: register and promote one "
    "(`citeops retrain`, or `citeops promote --version N`); the endpoint keeps running "
    "and serves it as soon as it is deployed"
)


def serving_readiness(base_url: str, timeout: float = 2.0) -> tuple[bool, str | None]:
    """``(ready, why not)`` from the serving endpoint's ``/ready`` (not ``/health``: an
    endpoint without a live model is alive but serves nothing)."""
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/ready", timeout=timeout)
    except httpx.HTTPError as error:
        return False, f"/ready does not answer ({type(error).__name__})"
    if response.status_code == 200:
        return True, None
    try:
        detail = str(response.json().get("detail") or "")
    except (ValueError, AttributeError):
        detail = ""
    return False, detail or f"/ready answers {response.status_code}"


def wait_ready(base_url: str, timeout: float, interval: float = 0.5) -> tuple[bool, str | None]:
    """Poll ``/ready`` until it passes, the endpoint says why it cannot (anything but
    "still loading"), or ``timeout`` passes; returns the last :func:`serving_readiness`."""
    deadline = time.monotonic() + timeout
    while True:
        ready, why = serving_readiness(base_url)
        loading = why is not None and STILL_LOADING in why
        if ready or not loading or time.monotonic() > deadline:
            return ready, why
        time.sleep(interval)


def worker_online(api_url: str, pool: str, name: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API lists worker ``name`` of ``pool`` as ONLINE."""
    url = f"{api_url.rstrip('/')}/work_pools/{pool}/workers/filter"
    try:
        response = httpx.post(url, json={}, timeout=timeout)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return any(w.get("name") == name and w.get("status") == "ONLINE" for w in response.json())


def wait_healthy(
    title: str,
    check: Callable[[], bool],
    record: ProcessRecord | None,
    timeout: float,
    interval: float = 0.5,
) -> float:
    """Poll ``check`` until it passes; returns the seconds it took.

    Raises:
        ServiceStartError: the process exited, or ``timeout`` passed; the message names the
            log and quotes its last lines (URLs in them with passwords masked).
    """
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if record is not None and not is_alive(record):
            raise ServiceStartError(_failure(title, "exited while starting", record))
        if time.monotonic() - start > timeout:
            raise ServiceStartError(
                _failure(title, f"did not answer within {timeout:.0f} s", record)
            )
        time.sleep(interval)


def _failure(title: str, what: str, record: ProcessRecord | None) -> str:
    if record is None:
        return f"{title} {what}"
    lines = tail(record.log, 40).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("=== ")]
    since_start = [line for line in lines[starts[-1] + 1 if starts else 0 :] if line.strip()]
    last = redact_url("\n".join(since_start[-6:])) or "(empty log)"
    indented = "\n".join("    " + line for line in last.splitlines())
    return f"{title} {what}; see {record.log}; its last lines:\n{indented}"
