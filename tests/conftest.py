"""Shared fixtures: every test gets its own CITEOPS_HOME and reads ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CITEOPS_TEST_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data"))


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


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").is_file():
        pytest.fail(f"benchmark data not found in {SHARED_DATA}; set CITEOPS_TEST_DATA_DIR")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def citeops_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Path:
    """Isolate state: test profile, a fresh CITEOPS_HOME, the shared data folder."""
    for key in list(os.environ):
        if key.startswith("CITEOPS_") and key != "CITEOPS_TEST_DATA_DIR":
            monkeypatch.delenv(key)
    home = tmp_path / "citeops-home"
    monkeypatch.setenv("CITEOPS_PROFILE", "test")
    monkeypatch.setenv("CITEOPS_HOME", str(home))
    monkeypatch.setenv("CITEOPS_DATA_DIR", str(data_dir))
    return home
