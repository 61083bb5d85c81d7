"""A real `kill -9` of `citeops ingest` mid-run, then a rerun: the store equals one clean run
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from citeops.configs.settings import load_settings
from tests.ingest_support import fresh_postgres_database, store_snapshot

pytestmark = pytest.mark.integration

OBJECTS, PART_LINES = 6, 2000


def committed(settings) -> tuple[int, int, int]:  # noqa: ANN001
    """(objects in the manifest, rows they say were stored, feedback rows present)."""
    from citeops.tasks.store.schema import feedback, ingest_objects, open_store

    with open_store(settings) as engine, engine.connect() as conn:
        objects, stored = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(ingest_objects.c.accepted + ingest_objects.c.conflicts), 0),
            )
        ).one()
        rows = conn.execute(select(func.count()).select_from(feedback)).scalar()
    return int(objects), int(stored), int(rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, citeops_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The killed run's store: the default SQLite file, or a fresh PostgreSQL database
    (where the server must roll back the dead connection's open transaction)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
        monkeypatch.setenv("CITEOPS_STORE_URL", url)
        yield "postgresql"


def test_killed_ingest_then_rerun_equals_one_clean_run(
    store: str, citeops_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.benchmarks.ingest import generate
    from citeops.benchmarks.settings import load_bench_settings
    from citeops.tasks.ingest.pipeline import ingest

    root = tmp_path / "logs"
    bench = load_bench_settings(ingest_part_lines=PART_LINES)
    generate(load_settings(), root, OBJECTS * PART_LINES, bench=bench)
    monkeypatch.setenv("CITEOPS_LOG_ROOT", str(root))
    monkeypatch.setenv("CITEOPS_INGEST__CHUNK_LINES", "500")
    monkeypatch.setenv("CITEOPS_INGEST__PROGRESS_EVERY_LINES", "500")
    monkeypatch.setenv("CITEOPS_INGEST__PARALLEL_PARSE_MIN_BYTES", "0")  # with the reader child

    proc = subprocess.Popen(
        [sys.executable, "-c", "from citeops.flows.cli import main; main()", "ingest", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_at = int(PART_LINES * 2.25)  # a quarter into the third object
    deadline = time.monotonic() + 240
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.startswith("ingest: ") and int(line.split()[1].replace(",", "")) >= kill_at:
                children = psutil.Process(proc.pid).children()
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "ingest never reached the kill point"
        else:
            pytest.fail(f"ingest ended before it could be killed (exit {proc.wait()})")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(children) == 1, "the reader child should be running"
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], "the reader child must end when its parent is killed"

    settings = load_settings()
    objects, stored, rows = committed(settings)
    assert 0 < objects < OBJECTS, "the kill should leave a partial run"
    assert rows == stored, "only whole objects are visible after the kill"

    rerun = ingest(settings).to_dict()
    assert rerun["objects"] == OBJECTS - objects
    after_kill = store_snapshot(settings)

    monkeypatch.setenv("CITEOPS_STORE_URL", f"sqlite:///{tmp_path / 'clean.db'}")
    clean_settings = load_settings()
    clean = ingest(clean_settings).to_dict()
    assert clean["lines"] == OBJECTS * PART_LINES
    assert after_kill == store_snapshot(clean_settings)
    assert sum(o[4] for o in after_kill["objects"]) == clean["lines"]
