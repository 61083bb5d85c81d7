"""The test session finds its data the way the tool does, and names missing services once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.harness import (
    MISSING_SERVICE,
    TestDataError,
    chromium_missing,
    find_chromium,
    has_benchmark_data,
    missing_service_summary,
    postgres_missing,
    resolve_test_data,
)


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CITEOPS_* variable at all, as on a fresh clone."""
    for key in ("CITEOPS_DATA_DIR", "CITEOPS_HOME", "CITEOPS_PROFILE", "CITEOPS_DATA_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _no_fetch(base_url: str, dest: Path) -> None:
    raise AssertionError(f"fetched {base_url} into {dest} although the data was there")


def test_citeops_data_dir_comes_first(
    tmp_path: Path, data_dir: Path, bare_env: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "clone"
    shutil.copytree(data_dir, project / ".citeops" / "data")
    bare_env.setenv("CITEOPS_DATA_DIR", str(data_dir))
    found = resolve_test_data(project, fetch=_no_fetch)
    assert found.path == data_dir.resolve()
    assert found.source == "CITEOPS_DATA_DIR"


def test_without_citeops_data_dir_the_fetched_copy_in_the_project_is_used(
    tmp_path: Path, data_dir: Path, bare_env: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "clone"
    shutil.copytree(data_dir, project / ".citeops" / "data")
    found = resolve_test_data(project, fetch=_no_fetch)
    assert found.path == (project / ".citeops" / "data").resolve()
    assert found.source == "fetched copy"


def test_citeops_home_moves_the_fetched_copy_as_for_the_tool(
    tmp_path: Path, data_dir: Path, bare_env: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "elsewhere"
    shutil.copytree(data_dir, home / "data")
    bare_env.setenv("CITEOPS_HOME", str(home))
    found = resolve_test_data(tmp_path / "clone", fetch=_no_fetch)
    assert found.path == (home / "data").resolve()


def test_missing_data_is_fetched_with_the_cli_download_into_the_tool_folder(
    tmp_path: Path, data_dir: Path, bare_env: pytest.MonkeyPatch
) -> None:
    """The real, verified `citeops data fetch` download, from a file:// mirror."""
    project = tmp_path / "clone"
    bare_env.setenv("CITEOPS_DATA_BASE_URL", data_dir.as_uri())
    assert not has_benchmark_data(project / ".citeops" / "data")
    found = resolve_test_data(project)
    assert found.source == "downloaded now"
    assert found.path == (project / ".citeops" / "data").resolve()
    assert has_benchmark_data(found.path)
    for name in ("scifact/corpus.jsonl", "citint/claims_test.jsonl"):
        assert (found.path / name).read_bytes() == (data_dir / name).read_bytes()


def test_an_incomplete_folder_is_completed_not_taken_for_data(
    tmp_path: Path, data_dir: Path, bare_env: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "partial"
    shutil.copytree(data_dir / "scifact", target / "scifact")
    bare_env.setenv("CITEOPS_DATA_DIR", str(target))
    calls: list[tuple[str, Path]] = []

    def fetch(base_url: str, dest: Path) -> None:
        calls.append((base_url, dest))
        shutil.copytree(data_dir / "citint", dest / "citint")

    found = resolve_test_data(tmp_path / "clone", fetch=fetch)
    assert calls == [(calls[0][0], target.resolve())]
    assert found.source == "downloaded now"


def test_no_data_and_no_network_stops_with_one_clear_message(
    tmp_path: Path, bare_env: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "clone"
    bare_env.setenv("CITEOPS_DATA_BASE_URL", (tmp_path / "no-mirror").as_uri())
    with pytest.raises(TestDataError) as raised:
        resolve_test_data(project)
    message = str(raised.value)
    assert f"benchmark data not found in {(project / '.citeops' / 'data').resolve()}" in message
    assert "download failed" in message
    assert "set CITEOPS_DATA_DIR" in message
    assert "\n" not in message


def test_summary_names_each_missing_service_once_with_its_tests() -> None:
    pg = f"{MISSING_SERVICE} PostgreSQL at 127.0.0.1:5432 (connection refused)"
    skips = [
        ("tests/integration/test_stack.py::test_b", f"Skipped: {pg}"),
        ("tests/integration/test_stack.py::test_a", f"Skipped: {pg}"),
        ("tests/integration/test_stack.py::test_ui", f"Skipped: {MISSING_SERVICE} Chromium (x)"),
        ("tests/code/test_bench_drift.py::test_e", "Skipped: no Evidently environment here"),
    ]
    assert missing_service_summary(skips) == [
        "Chromium (x): 1 test(s) skipped",
        "  tests/integration/test_stack.py::test_ui",
        "PostgreSQL at 127.0.0.1:5432 (connection refused): 2 test(s) skipped",
        "  tests/integration/test_stack.py::test_a",
        "  tests/integration/test_stack.py::test_b",
    ]
    assert missing_service_summary(skips[3:]) == []


def test_postgres_probe_names_the_server_it_could_not_reach() -> None:
    reason = postgres_missing(f"postgresql://postgres@127.0.0.1:{free_port()}/test", timeout_s=2)
    assert reason is not None
    assert reason.startswith(f"{MISSING_SERVICE} PostgreSQL at 127.0.0.1:")


def test_chromium_probe_finds_an_executable_and_says_what_to_install(tmp_path: Path) -> None:
    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert find_chromium([str(exe)]) == exe
    assert chromium_missing([str(exe)]) is None
    reason = chromium_missing([str(tmp_path / "absent")])
    assert reason is not None and "apt-get install chromium" in reason
