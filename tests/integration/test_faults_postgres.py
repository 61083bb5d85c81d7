"""PostgreSQL restarted while the loop writes to the curated store.

Each test runs its own cluster (:mod:`tests.pg_cluster`: ``initdb`` + ``pg_ctl`` on a
free port), never the machine's shared server, and restarts it (``pg_ctl restart -m
fast``: every session ended, open transactions rolled back) at a named point of a
command. What the user sees: one ``error:`` line naming the store, exit 2, no user text
(claims, evidence) on the terminal or in the log; or a run that recovers by itself. What
is left: whole objects or nothing, no lock and no record left running; the same command
run again completes the work exactly once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.harness import run_citeops
from tests.ingest_support import feedback_line, write_part
from tests.integration.test_retrain import (
    LENIENT_GATE,
    TOKEN,
    aliases,
    endpoints,
    live,
    register_tiny,
)
from tests.pg_cluster import PgCluster, cluster_missing, private_cluster

pytestmark = pytest.mark.integration
SECRET = "zq-private-claim-text"  # in every claim: must never reach stderr or the log


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    reason = cluster_missing()
    if reason:
        pytest.skip(f"missing service: {reason}")
    with private_cluster() as found:
        yield found


@pytest.fixture
def store_url(cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database of the private cluster as this test's curated store."""
    url = cluster.create_database()
    monkeypatch.setenv("CITEOPS_STORE_URL", url)
    return url


@pytest.fixture
def env(
    store_url: str, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> pytest.MonkeyPatch:
    """The retrain tests' settings (tests/integration/test_retrain.py) on this store."""
    monkeypatch.setenv("CITEOPS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CITEOPS_SERVE__PRECISION", "fp32")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "1")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_POLL_SECONDS", "0.2")
    return monkeypatch


def _feedback_parts(root: Path) -> int:
    """Two feedback parts: ``a`` of 100 distinct lines, ``b`` of 300 distinct lines plus
    its first 20 again (duplicates: votes). Returns the number of lines."""
    a = [feedback_line(claim=f"{SECRET} a-{i}") for i in range(100)]
    b = [feedback_line(claim=f"{SECRET} b-{i}") for i in range(300)]
    write_part(root, "feedback", "2026-01-05", "part-a.jsonl", a)
    write_part(root, "feedback", "2026-01-05", "part-b.jsonl", b + b[:20])
    return len(a) + len(b) + 20


def _store_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows, votes = conn.execute(
                text("SELECT count(*), coalesce(sum(votes), 0) FROM feedback")
            ).one()
            objects, lines = conn.execute(
                text("SELECT count(*), coalesce(sum(lines), 0) FROM ingest_objects")
            ).one()
            unbalanced = conn.execute(
                text(
                    "SELECT count(*) FROM ingest_objects "
                    "WHERE accepted + duplicates + conflicts + quarantined <> lines"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "rows": rows,
        "votes": votes,
        "objects": objects,
        "lines": lines,
        "unbalanced": unbalanced,
    }


def test_postgres_restarted_during_ingest_fails_in_one_line_and_the_rerun_is_exact(
    cluster: PgCluster,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from citeops.tasks.ingest import commit as commit_module

    root = tmp_path / "logs"
    total = _feedback_parts(root)
    monkeypatch.setenv("CITEOPS_INGEST__CHUNK_LINES", "50")  # several chunks per object
    real_store_chunk = commit_module._store_chunk
    seen: list[str] = []

    def store_chunk_then_restart(*args: Any) -> Any:
        stored = real_store_chunk(*args)
        uri = args[1].uri
        if uri not in seen:
            seen.append(uri)
            if len(seen) == 2:  # the second object's first chunk is written, not committed
                cluster.restart()
        return stored

    command = ["ingest", "--source", str(root), "--json"]
    caplog.set_level(logging.DEBUG)
    with monkeypatch.context() as fault:
        fault.setattr(commit_module, "_store_chunk", store_chunk_then_restart)
        code, out, err = run_citeops(command, capsys)
    assert len(seen) == 2, seen
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "unreachable" in err and "rerun the same command" in err, err
    assert "127.0.0.1" in err and "Traceback" not in err
    assert SECRET not in err and SECRET not in out and SECRET not in caplog.text
    after_fault = _store_counts(store_url)
    # the first object whole, nothing of the second
    assert after_fault == {"rows": 100, "votes": 100, "objects": 1, "lines": 100, "unbalanced": 0}

    code, out, err = run_citeops(command, capsys)
    assert code == 0, (out, err)
    assert json.loads(out)["objects"] == 1
    assert _store_counts(store_url) == {
        "rows": 400,
        "votes": total,  # every line once: the duplicates are votes, none counted twice
        "objects": 2,
        "lines": total,
        "unbalanced": 0,
    }
    code, out, err = run_citeops(command, capsys)
    assert code == 0 and json.loads(out)["objects"] == 0, (out, err)
    assert _store_counts(store_url)["votes"] == total


def test_postgres_restarted_during_retrain_is_retried_and_leaves_no_lock_or_running_record(
    cluster: PgCluster,
    store_url: str,
    env: pytest.MonkeyPatch,
) -> None:
    """Restarts at three named points of one retrain: inside the lock's transaction,
    between training and the next record write, inside the transaction of the final
    record. Each store write is tried again after a pause (``retry_unreachable``), so the
    run recovers: promoted, recorded so, the lock free; the next run takes the lock."""
    from citeops.configs.settings import load_settings
    from citeops.flows.retrain import retrain
    from citeops.tasks.store import promotions as promotions_module
    from citeops.tasks.train import steps as train_steps

    for key, value in LENIENT_GATE.items():
        env.setenv(key, value)
    settings = load_settings()
    assert settings.store_url == store_url
    old = register_tiny("champion", favour=2)
    restarts: list[str] = []
    real_acquire = promotions_module._try_acquire
    real_train = train_steps.train_candidate
    real_row_values = promotions_module._row_values
    real_update = promotions_module.update
    writing: list[str] = []

    def acquire_then_restart(*args: Any) -> Any:
        held = real_acquire(*args)  # the lock row is inserted, not committed
        if "lock" not in restarts:
            restarts.append("lock")
            cluster.restart()
        return held

    def train_then_restart(*args: Any, **kwargs: Any) -> Any:
        candidate = real_train(*args, **kwargs)
        restarts.append("after training")
        cluster.restart()
        return candidate

    def row_values(record: Any) -> Any:
        writing.append(record.outcome)
        return real_row_values(record)

    def update_then_restart(table: Any) -> Any:
        if writing[-1] == "promoted" and "final record" not in restarts:
            restarts.append("final record")  # inside the transaction, before the UPDATE
            cluster.restart()
        return real_update(table)

    env.setattr(promotions_module, "_try_acquire", acquire_then_restart)
    env.setattr(train_steps, "train_candidate", train_then_restart)
    env.setattr(promotions_module, "_row_values", row_values)
    env.setattr(promotions_module, "update", update_then_restart)
    retried: list[str] = []
    retry_log = logging.getLogger("citeops.tasks.store.schema")
    listener = logging.Handler(logging.WARNING)
    listener.emit = lambda record: retried.append(record.getMessage())  # type: ignore[method-assign]
    retry_log.addHandler(listener)
    env.setattr(retry_log, "level", logging.WARNING)
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        record = retrain(force=True)
        assert restarts == ["lock", "after training", "final record"]
        assert record["outcome"] == "promoted", record["detail"]
        new = record["version"]
        assert live(base) == new != old
        assert aliases(settings)["champion"] == new
    retry_log.removeHandler(listener)
    assert len([m for m in retried if "trying again" in m]) == 2, retried  # lock, final record
    assert "retrain lock not written" in retried[0] and "retrain record" in retried[1], retried
    assert _retrain_leftovers(store_url) == {"locks": 0, "running": 0, "promoted": 1}

    env.setattr(promotions_module, "_try_acquire", real_acquire)
    again = retrain(force=False)  # the lock is free, the store writes as before
    assert again["outcome"] == "skipped", again["detail"]
    assert _retrain_leftovers(store_url) == {"locks": 0, "running": 0, "promoted": 1}


def _retrain_leftovers(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM locks")).scalar_one()
            outcomes = conn.execute(text("SELECT outcome FROM promotions")).scalars().all()
    finally:
        engine.dispose()
    return {
        "locks": count,
        "running": outcomes.count("running"),
        "promoted": outcomes.count("promoted"),
    }
