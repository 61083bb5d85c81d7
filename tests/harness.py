"""What the test session needs from the machine: the benchmark data and optional services.

The data is found the way the tool finds it (``CITEOPS_DATA_DIR``, else ``<CITEOPS_HOME>/data``
with ``CITEOPS_HOME`` defaulting to the project's ``.citeops``) and, when it is not there,
fetched into that folder with the same verified download as ``citeops data fetch``.

Integration tests that need PostgreSQL or Chromium skip, with a reason that starts with
:data:`MISSING_SERVICE`, when the service is not on this machine; the session summary
lists them once (:func:`missing_service_summary`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citeops.tasks.errors import CiteopsError

log = logging.getLogger(__name__)

MISSING_SERVICE = "missing service:"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")

Fetcher = Callable[[str, Path], object]


class TestDataError(CiteopsError):
    """The benchmark data is neither where the tool looks for it nor downloadable."""

    __test__ = False  # not a test class, despite its name


@dataclass(frozen=True)
class TestData:
    """Where the session's benchmark data is, and how it was found."""

    __test__ = False

    path: Path
    source: str  # "CITEOPS_DATA_DIR", "fetched copy" or "downloaded now"


def has_benchmark_data(folder: Path) -> bool:
    """True when every file of the project's SHA-256 list is present in ``folder``.

    Presence only: the sums were checked when the files were fetched.
    """
    from citeops.tasks.data.fetch import expected_sums

    return all((folder / name).is_file() for name in expected_sums())


def resolve_test_data(project_root: Path, fetch: Fetcher | None = None) -> TestData:
    """Find the benchmark data as the tool does, fetching it when it is missing.

    Reads ``CITEOPS_DATA_DIR``, ``CITEOPS_HOME`` and ``CITEOPS_DATA_BASE_URL`` from the
    environment; without ``CITEOPS_HOME`` the home is ``<project_root>/.citeops`` (where
    ``make data`` fetches to). ``fetch(base_url, dest)`` defaults to the CLI's
    :func:`~citeops.tasks.data.fetch.fetch_datasets`.

    Raises:
        TestDataError: the data is missing and could not be fetched; the message says
            which folder was looked at, which URL failed and what to set.
    """
    from citeops.configs.settings import SettingsError, load_settings
    from citeops.tasks.data.fetch import fetch_datasets

    try:
        home = {} if os.environ.get("CITEOPS_HOME") else {"home": project_root / ".citeops"}
        settings = load_settings(**home)
    except SettingsError as error:
        raise TestDataError(f"cannot resolve the data folder: {error}") from None
    folder = Path(settings.data_dir)
    if has_benchmark_data(folder):
        named = bool(os.environ.get("CITEOPS_DATA_DIR"))
        return TestData(folder, "CITEOPS_DATA_DIR" if named else "fetched copy")
    log.warning("benchmark data not in %s; fetching it from %s", folder, settings.data_base_url)
    try:
        (fetch or fetch_datasets)(settings.data_base_url, folder)
    except CiteopsError as error:
        raise TestDataError(
            f"benchmark data not found in {folder} and could not be fetched ({error}); "
            "set CITEOPS_DATA_DIR to a folder that holds it, or run `citeops data fetch` "
            "where the network is reachable"
        ) from None
    if not has_benchmark_data(folder):
        raise TestDataError(f"{folder}: the fetch finished but benchmark files are missing")
    return TestData(folder, "downloaded now")


def postgres_missing(url: str = PG_ADMIN_URL, timeout_s: int = 3) -> str | None:
    """``None`` when PostgreSQL answers at ``url``; else a skip reason saying why not."""
    try:
        import psycopg
    except ImportError:
        return f"{MISSING_SERVICE} PostgreSQL (psycopg is not installed)"
    try:
        with psycopg.connect(url, connect_timeout=timeout_s):
            return None
    except psycopg.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return f"{MISSING_SERVICE} PostgreSQL at {_host_of(url)} ({first_line})"


def find_chromium(candidates: Iterable[str] = CHROMIUM_CANDIDATES) -> Path | None:
    """The first of ``candidates`` (names on PATH or paths) that is an executable, else None."""
    for name in candidates:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def chromium_missing(candidates: Iterable[str] = CHROMIUM_CANDIDATES) -> str | None:
    """``None`` when a Chromium is installed; else a skip reason saying what to install."""
    names = tuple(candidates)
    if find_chromium(names) is not None:
        return None
    return (
        f"{MISSING_SERVICE} Chromium (none of {', '.join(names)} found; apt-get install chromium)"
    )


def missing_service_summary(skips: Iterable[tuple[str, str]]) -> list[str]:
    """Lines saying, once per missing service, which tests it caused to skip.

    ``skips`` is ``(test id, skip reason)`` for every skipped test; reasons that do not start
    with :data:`MISSING_SERVICE` are ignored. Empty when no service was missing.
    """
    by_reason: dict[str, list[str]] = {}
    for test_id, reason in skips:
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(MISSING_SERVICE):
            by_reason.setdefault(reason.removeprefix(MISSING_SERVICE).strip(), []).append(test_id)
    lines = []
    for reason, tests in sorted(by_reason.items()):
        lines.append(f"{reason}: {len(tests)} test(s) skipped")
        lines.extend(f"  {test_id}" for test_id in sorted(tests))
    return lines


def _host_of(url: str) -> str:
    return url.rsplit("@", 1)[-1].split("/", 1)[0]


def run_citeops(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """Run the ``citeops`` entry point in-process: ``(exit status, stdout, stderr)``."""
    import pytest

    from citeops.flows.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err
