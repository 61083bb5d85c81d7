"""The curated store's Alembic migrations: a fresh store, stores made by the previous
schema code (versions 1-3, before Alembic), concurrent upgrades from several processes on
SQLite and on the real PostgreSQL, and the retrain decisions they add beside promotions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from citeops.configs.settings import load_settings
from citeops.flows.cli import app
from citeops.flows.cli.common import run_cli
from citeops.tasks.store.schema import (
    LEGACY_VERSION_TABLE,
    VERSION_TABLE,
    StoreError,
    current_revision,
    head_revision,
    make_engine,
    metadata,
    open_store,
    upgrade,
)

# The DDL the previous code (tasks/store/schema.py before Alembic) emitted, per schema
# version, in a form both SQLite and PostgreSQL take: {serial} is the auto-numbered key
# type, {ts} SQLAlchemy's DateTime.
LEGACY_DDL = {
    1: """
CREATE TABLE schema_version (version {serial} NOT NULL, applied_at {ts} NOT NULL,
  PRIMARY KEY (version));
CREATE TABLE ingest_runs (id {serial} NOT NULL, source TEXT NOT NULL, started_at {ts} NOT NULL,
  finished_at {ts}, report TEXT, PRIMARY KEY (id));
CREATE TABLE training_marks (id {serial} NOT NULL, at {ts} NOT NULL, note TEXT, PRIMARY KEY (id));
CREATE TABLE ingest_objects (id {serial} NOT NULL, uri VARCHAR(1024) NOT NULL,
  kind VARCHAR(16) NOT NULL, size BIGINT NOT NULL, etag VARCHAR(128) NOT NULL, mtime_ns BIGINT,
  lines INTEGER NOT NULL, accepted INTEGER NOT NULL, duplicates INTEGER NOT NULL,
  conflicts INTEGER NOT NULL, quarantined INTEGER NOT NULL, leaked INTEGER NOT NULL,
  run_id INTEGER, ingested_at {ts} NOT NULL, changed_etag VARCHAR(128), changed_size BIGINT,
  changed_seen_at {ts}, PRIMARY KEY (id), UNIQUE (uri),
  FOREIGN KEY(run_id) REFERENCES ingest_runs (id));
CREATE TABLE feedback (id {serial} NOT NULL, object_id INTEGER NOT NULL, line_no INTEGER NOT NULL,
  claim TEXT NOT NULL, evidence TEXT NOT NULL, user_label VARCHAR(16) NOT NULL, model TEXT,
  prediction TEXT, datetime {ts} NOT NULL, last_datetime {ts} NOT NULL,
  request_id VARCHAR(128), model_version VARCHAR(128), slot VARCHAR(128),
  pair_key VARCHAR(32) NOT NULL, votes INTEGER NOT NULL, leaked BOOLEAN NOT NULL,
  conflict BOOLEAN NOT NULL, ingested_at {ts} NOT NULL, PRIMARY KEY (id),
  CONSTRAINT uq_feedback_pair_label UNIQUE (pair_key, user_label),
  FOREIGN KEY(object_id) REFERENCES ingest_objects (id));
CREATE INDEX ix_feedback_ingested_at ON feedback (ingested_at);
CREATE TABLE quarantine (id {serial} NOT NULL, object_id INTEGER NOT NULL,
  uri VARCHAR(1024) NOT NULL, line_no INTEGER NOT NULL, reason VARCHAR(64) NOT NULL,
  detail TEXT, raw TEXT NOT NULL, ingested_at {ts} NOT NULL, PRIMARY KEY (id),
  FOREIGN KEY(object_id) REFERENCES ingest_objects (id));
CREATE INDEX ix_quarantine_reason ON quarantine (reason);
CREATE TABLE queries (id {serial} NOT NULL, object_id INTEGER NOT NULL, line_no INTEGER NOT NULL,
  request_id VARCHAR(128), dedupe_key VARCHAR(160) NOT NULL, datetime {ts} NOT NULL,
  claim TEXT NOT NULL, evidence TEXT NOT NULL, model_version VARCHAR(128), slot VARCHAR(128),
  prediction VARCHAR(16) NOT NULL, probabilities TEXT NOT NULL, latency_ms FLOAT,
  ingested_at {ts} NOT NULL, PRIMARY KEY (id),
  FOREIGN KEY(object_id) REFERENCES ingest_objects (id), UNIQUE (dedupe_key));
CREATE INDEX ix_queries_datetime ON queries (datetime);
CREATE TABLE validation_results (id {serial} NOT NULL, object_id INTEGER NOT NULL,
  chunk INTEGER NOT NULL, suite VARCHAR(64) NOT NULL, suite_version INTEGER NOT NULL,
  success BOOLEAN NOT NULL, rows INTEGER NOT NULL, unexpected_rows INTEGER NOT NULL,
  results TEXT NOT NULL, validated_at {ts} NOT NULL, PRIMARY KEY (id),
  FOREIGN KEY(object_id) REFERENCES ingest_objects (id));
""",
    2: """
CREATE TABLE promotions (id {serial} NOT NULL, kind VARCHAR(16) NOT NULL, version VARCHAR(32),
  previous_version VARCHAR(32), outcome VARCHAR(32) NOT NULL, trigger TEXT, gate TEXT,
  bake TEXT, data TEXT, detail TEXT, cost_usd FLOAT, flow_run_id VARCHAR(64),
  mlflow_run_ids TEXT, started_at {ts} NOT NULL, finished_at {ts}, PRIMARY KEY (id));
CREATE INDEX ix_promotions_started ON promotions (started_at);
CREATE TABLE locks (name VARCHAR(64) NOT NULL, owner VARCHAR(256) NOT NULL,
  acquired_at {ts} NOT NULL, expires_at {ts} NOT NULL, PRIMARY KEY (name));
""",
    3: """
CREATE TABLE feedback_clients (id {serial} NOT NULL, pair_key VARCHAR(32) NOT NULL,
  user_label VARCHAR(16) NOT NULL, client_id VARCHAR(128) NOT NULL, votes INTEGER NOT NULL,
  first_datetime {ts} NOT NULL, last_datetime {ts} NOT NULL, PRIMARY KEY (id),
  CONSTRAINT uq_feedback_clients UNIQUE (pair_key, user_label, client_id));
CREATE INDEX ix_feedback_clients_client ON feedback_clients (client_id);
CREATE TABLE excluded_clients (client_id VARCHAR(128) NOT NULL, excluded_at {ts} NOT NULL,
  lines INTEGER NOT NULL, note TEXT, PRIMARY KEY (client_id));
""",
}
TYPES = {
    "sqlite": {"serial": "INTEGER", "ts": "DATETIME"},
    "postgresql": {"serial": "SERIAL", "ts": "TIMESTAMP WITHOUT TIME ZONE"},
}
# rows a store of each version held; they must read back through today's code
LEGACY_ROWS = {
    1: [
        "INSERT INTO ingest_runs (source, started_at) VALUES ('logs', '2026-01-05 10:00:00')",
        "INSERT INTO ingest_objects (uri, kind, size, etag, lines, accepted, duplicates,"
        " conflicts, quarantined, leaked, run_id, ingested_at) VALUES ('file:///f.jsonl',"
        " 'feedback', 5000000000, 'e', 1, 1, 0, 0, 0, 0, 1, '2026-01-05 10:00:01')",
        "INSERT INTO feedback (object_id, line_no, claim, evidence, user_label, datetime,"
        " last_datetime, pair_key, votes, leaked, conflict, ingested_at) VALUES (1, 1,"
        " 'Aspirin helps.', 'A trial showed it.', 'SUPPORT', '2026-01-05 09:00:00',"
        " '2026-01-05 09:00:00', 'k1', 1, FALSE, FALSE, '2026-01-05 10:00:01')",
        "INSERT INTO training_marks (at, note) VALUES ('2026-01-01 00:00:00', 'seed')",
    ],
    2: [
        "INSERT INTO promotions (kind, version, outcome, trigger, started_at) VALUES"
        " ('retrain', '2', 'promoted', '{\"causes\": [\"forced\"]}', '2026-01-06 00:00:00')",
    ],
    3: [
        "INSERT INTO excluded_clients (client_id, excluded_at, lines) VALUES"
        " ('mallory', '2026-01-07 00:00:00', 3)",
    ],
}


def make_legacy_store(engine: Engine, version: int) -> None:
    """The store the previous code left at ``version``: its tables, its ``schema_version``
    rows, and some data."""
    with engine.begin() as conn:
        for number in range(1, version + 1):
            ddl = LEGACY_DDL[number].format(**TYPES[conn.dialect.name])
            for statement in filter(str.strip, ddl.split(";")):
                conn.exec_driver_sql(statement)
            conn.execute(
                text(f"INSERT INTO {LEGACY_VERSION_TABLE} VALUES (:v, '2026-01-01 00:00:00')"),
                {"v": number},
            )
            for statement in LEGACY_ROWS[number]:
                conn.exec_driver_sql(statement)


def schema_of(engine: Engine) -> dict[str, list[tuple[str, str, bool]]]:
    """Table -> (column, type, nullable) as the database reports them."""
    with engine.connect() as conn:
        found = inspect(conn)
        return {
            name: [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)]
            for name in found.get_table_names()
            if name not in (VERSION_TABLE, LEGACY_VERSION_TABLE)
        }


def differences_from_code(engine: Engine) -> list[object]:
    """What Alembic's autogenerate finds between the database and the code's tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "include_object": lambda _o, name, kind, *_: name != LEGACY_VERSION_TABLE,
            },
        )
        return compare_metadata(context, metadata)


def test_fresh_store_reaches_head_with_the_codes_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert upgrade(engine) == head_revision()
    assert differences_from_code(engine) == []
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert not inspect(conn).has_table(LEGACY_VERSION_TABLE)
    assert upgrade(engine) == head_revision()  # again: nothing to do


@pytest.mark.parametrize("version", [1, 2, 3])
def test_legacy_store_is_stamped_upgraded_and_keeps_its_data(version: int) -> None:
    from citeops.tasks.store.promotions import list_records
    from citeops.tasks.store.queries import last_training_time, training_feedback

    settings = load_settings()
    engine = make_engine(settings)
    make_legacy_store(engine, version)
    with open_store(settings) as opened, opened.connect() as conn:
        assert current_revision(conn) == head_revision()
        kept = conn.execute(text("SELECT size FROM ingest_objects")).scalar()
    assert kept == 5_000_000_000
    assert [e.claim for e in training_feedback(settings)] == ["Aspirin helps."]
    assert last_training_time(settings) is not None
    records = list_records(settings)
    assert [(r.version, r.trigger) for r in records] == (
        [("2", {"causes": ["forced"]})] if version >= 2 else []
    )
    fresh = create_engine(f"sqlite:///{settings.home / 'fresh.db'}")
    upgrade(fresh)
    assert schema_of(engine) == schema_of(fresh)
    assert differences_from_code(engine) == []


def test_a_newer_legacy_version_is_refused() -> None:
    settings = load_settings()
    engine = make_engine(settings)
    make_legacy_store(engine, 1)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {LEGACY_VERSION_TABLE} VALUES (4, '2026-01-02')"))
    with pytest.raises(
        StoreError, match="schema version 4 .before Alembic., newer than this citeops"
    ):
        upgrade(engine)


CHILD = """
import sys, time
from pathlib import Path
from sqlalchemy import create_engine
from citeops.tasks.store.schema import upgrade
engine = create_engine(sys.argv[1], connect_args={connect_args})
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.005)
print(upgrade(engine))
"""


def upgrade_from_processes(url: str, folder: Path, count: int = 4, **connect: object) -> None:
    """Run :func:`upgrade` on ``url`` from ``count`` processes released at the same
    moment; each must succeed and report the head revision."""
    go = folder / "go"
    script = CHILD.format(connect_args=repr(connect))
    ready = [folder / f"ready-{i}" for i in range(count)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, str(mark), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mark in ready
    ]
    deadline = time.monotonic() + 120
    while not all(mark.exists() for mark in ready) and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    outcomes = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * count, outcomes
    assert [out.strip() for out, _ in outcomes] == [head_revision()] * count


def test_concurrent_upgrades_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    make_legacy_store(create_engine(url), 1)
    upgrade_from_processes(url, tmp_path, timeout=60)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
    assert differences_from_code(engine) == []


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A throwaway database on the local PostgreSQL server (dropped afterwards)."""
    name = f"citeops_migrations_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        postgres_admin_url.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("version", [None, 2])
def test_concurrent_upgrades_on_postgresql(
    pg_url: str, version: int | None, tmp_path: Path
) -> None:
    engine = create_engine(pg_url)
    if version is not None:
        make_legacy_store(engine, version)
    upgrade_from_processes(pg_url, tmp_path)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
        if version is not None:
            assert conn.execute(text("SELECT version FROM promotions")).scalar() == "2"
    assert differences_from_code(engine) == []
    engine.dispose()


def test_history_shows_decisions_beside_promotions(capsys: pytest.CaptureFixture[str]) -> None:
    from citeops.tasks.store.promotions import PromotionRecord, finish_record
    from citeops.tasks.trigger.decision import should_retrain

    settings = load_settings()
    quiet = should_retrain(settings, new_feedback=3, drift=False)
    finish_record(settings, PromotionRecord(kind="retrain"), "skipped", "no cause fired")
    fired = should_retrain(settings, force=True, new_feedback=150, drift=False)
    assert run_cli(app, ["history", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in history["decisions"]] == [fired.id, quiet.id]
    assert history["decisions"][0]["causes"] == ["feedback", "forced"]
    assert history["decisions"][1]["retrain"] is False
    assert [r["outcome"] for r in history["promotions"]] == ["skipped"]
    assert run_cli(app, ["history"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]  # newest first, both kinds
    assert [line.split()[1:3] for line in lines] == [
        ["decision", "retrain"],
        ["retrain", "skipped"],
        ["decision", "no"],
    ]
    assert lines[0].endswith("feedback+forced")
