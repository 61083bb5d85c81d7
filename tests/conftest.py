"""Shared fixtures: every test gets its own CITEOPS_HOME and reads the benchmark data.

The data is found the way the tool finds it (CITEOPS_DATA_DIR, else the fetched
``.citeops/data``, else it is fetched; see :mod:`tests.harness`). Tests that need
PostgreSQL or Chromium ask for the ``postgres_admin_url`` or ``chromium`` fixture and skip
when the service is missing; the session summary names them once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    TestData,
    TestDataError,
    chromium_missing,
    find_chromium,
    missing_service_summary,
    postgres_missing,
    resolve_test_data,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_TEST_DATA = pytest.StashKey[TestData]()


class _ProcessStderr:
    """The process's own standard error (file descriptor 2, which pytest captures per
    test), looked up at each write, never closed by a test."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        stream = sys.__stderr__
        return stream.write(text) if stream is not None else len(text)

    def flush(self) -> None:
        if sys.__stderr__ is not None:
            sys.__stderr__.flush()

    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def prefect_console_to_process_stderr() -> None:
    """Prefect builds its console handlers once per process, on the stream of the test
    that first set up its logging: later tests would write to that test's closed capture
    ("Logging error ... I/O operation on closed file" in their stderr). Point every such
    handler at the process's standard error instead, out of the tests' ``capsys``: what a
    test reads from ``capsys`` is what citeops itself wrote."""
    import logging

    handlers = sys.modules.get("prefect.logging.handlers")
    handler_type = getattr(handlers, "PrefectConsoleHandler", None)
    if handler_type is None:
        return
    stream = _ProcessStderr()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, handler_type):
                handler.stream = stream  # not setStream: it flushes the old, maybe closed
                handler.console.file = stream


def pytest_configure(config: pytest.Config) -> None:
    """Prefect state in a throw-away folder, no telemetry (no network here)."""
    import tempfile

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="citeops-prefect-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the whole session (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the tool's own helper)."""
    from citeops.tasks.stack.processes import free_port as tool_free_port

    return tool_free_port()


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers with a status below 500."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """A real S3 HTTP API (moto_server) on a free localhost port; yields its endpoint URL.

    Tests that use it set ``CITEOPS_S3__ENDPOINT_URL`` to this URL; dummy AWS credentials
    are set for the whole session.
    """
    import shutil
    import subprocess
    import sys

    port = free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        wait_for_http(url + "/", timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto S3 API, with settings pointed at it; yields its name."""
    import uuid

    import boto3

    name = f"citeops-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(Bucket=name)
    monkeypatch.setenv("CITEOPS_S3__ENDPOINT_URL", moto_s3)
    return name


@pytest.fixture(scope="session")
def data_dir(request: pytest.FixtureRequest) -> Path:
    """The benchmark data folder, found (or fetched) once per session as the tool does.

    Stops the whole session with one message when the data can be neither found nor fetched.
    """
    try:
        found = resolve_test_data(PROJECT_ROOT)
    except TestDataError as error:
        pytest.exit(f"error: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    request.config.stash[_TEST_DATA] = found
    return found.path


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the local PostgreSQL server's ``test`` database; skips the test when it is down."""
    from tests.harness import PG_ADMIN_URL

    reason = postgres_missing(PG_ADMIN_URL)
    if reason:
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Path of a headless-capable Chromium; skips the test when none is installed."""
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    found = find_chromium()
    assert found is not None
    return found


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    """Say once where the data came from and which tests a missing service skipped."""
    found = config.stash.get(_TEST_DATA, None)
    if found is not None:
        terminalreporter.write_line(f"benchmark data: {found.path} ({found.source})")
    skips = [
        (report.nodeid, report.longrepr[2])
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple)
    ]
    lines = missing_service_summary(skips)
    if lines:
        terminalreporter.section("skipped: service not on this machine", yellow=True)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def citeops_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Path:
    """Isolate state: test profile, a fresh CITEOPS_HOME, the session's data folder."""
    for key in list(os.environ):
        # MLflow exports the URIs it was last pointed at: never inherit another test's store
        if key.startswith("CITEOPS_") or key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            monkeypatch.delenv(key)
    home = tmp_path / "citeops-home"
    monkeypatch.setenv("CITEOPS_PROFILE", "test")
    monkeypatch.setenv("CITEOPS_HOME", str(home))
    monkeypatch.setenv("CITEOPS_DATA_DIR", str(data_dir))
    point_mlflow_at_test_store(monkeypatch)
    return home


def point_mlflow_at_test_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test is an entry point: it points MLflow's process default at its own store
    (what ``citeops.flows.tracking.use_mlflow`` does for the CLI and the flows), through
    the environment while MLflow is not imported yet, else through MLflow itself."""
    from citeops.configs.settings import load_settings

    settings = load_settings()
    uri = str(settings.mlflow.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    if "mlflow" in sys.modules:
        from citeops.flows.tracking import use_mlflow

        use_mlflow(settings)


@pytest.fixture
def registered_tiny_model(citeops_env: Path) -> tuple[str, str]:
    """The (untrained) tiny model logged and registered in this test's MLflow store.

    Returns ``(model_uri, version)`` with ``model_uri`` = ``models:/claim-verifier/<v>``;
    the version also carries the ``latest-trained`` alias. Takes a few seconds.
    """
    import tempfile

    from citeops.configs.settings import load_settings
    from citeops.tasks.classifier.artifact import save_hf_folder
    from citeops.tasks.classifier.base import build_tiny
    from citeops.tasks.data.multivers import LABELS
    from citeops.tasks.registry.register import register_folder

    settings = load_settings()
    model, tokenizer = build_tiny(settings.model, seed=0)
    meta = {"labels": list(LABELS), "max_length": settings.model.max_length, "base_model": "tiny"}
    with tempfile.TemporaryDirectory(prefix="citeops-tiny-") as tmp:
        folder = save_hf_folder(model, tokenizer, Path(tmp) / "hf_model", meta)
        registered = register_folder(
            settings, folder, run_name="tiny-fixture", alias=settings.train.register_alias
        )
    return registered.model_uri, registered.version
