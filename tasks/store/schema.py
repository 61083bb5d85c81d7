"""Tables of the curated store, and the Alembic migrations that create and upgrade them.

The tables here are what the code reads and writes; the migrations under ``migrations/``
are frozen steps (explicit ``op.create_table`` / ``op.add_column``) from an empty database
to that state, so an old database and a fresh one reach the same schema. :func:`upgrade`
runs them programmatically (no ``alembic.ini``) every time the tool opens the store
(``open_store``), so nobody creates tables by hand. The revision in force is kept in
:data:`VERSION_TABLE` (not ``alembic_version``, so the store can share a database with
MLflow or Prefect, which keep theirs there).

Databases made before Alembic carry the old ``schema_version`` table (versions 1-3): they
are stamped with the matching revision (:data:`LEGACY_REVISIONS`), then upgraded.

Datetimes are stored as naive UTC (``DateTime`` without time zone) on both SQLite and
PostgreSQL; :func:`utc_naive` converts aware values on the way in.
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from citeops.tasks.errors import CiteopsError
from citeops.tasks.logcontract import MAX_META_CHARS
from citeops.tasks.redact import redact_url

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from citeops.configs.settings import Settings


log = logging.getLogger(__name__)
T = TypeVar("T")
# a server restart (``pg_ctl restart``, a fail-over) takes seconds: a short write that met
# one is tried again after these pauses (retry_unreachable)
UNREACHABLE_RETRY_DELAYS = (1.0, 3.0)


class StoreError(CiteopsError):
    """The curated store cannot be opened or is newer than this version of citeops."""


class StoreUnreachable(StoreError):
    """The store's server could not be reached, or it dropped the connection while a
    command used it (restarted, stopped, network lost). The open transaction was rolled
    back by the server; what committed before stays."""


metadata = MetaData()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "store_alembic_version"
LEGACY_VERSION_TABLE = "schema_version"
# the previous code's schema version -> the revision whose tables it had
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003"}
# key of the PostgreSQL advisory lock held while migrating (any fixed 64-bit number)
MIGRATION_LOCK_KEY = zlib.crc32(b"citeops.store.migrations")

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("report", Text),  # the report JSON
)

# One row per ingested object (the manifest): its identity and what its lines became.
ingest_objects = Table(
    "ingest_objects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uri", String(1024), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # feedback | queries
    Column("size", BigInteger, nullable=False),
    Column("etag", String(128), nullable=False),  # S3 ETag or sha256 of the bytes
    Column("mtime_ns", BigInteger),  # local files only: skip re-hashing unchanged files
    Column("lines", Integer, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("conflicts", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("leaked", Integer, nullable=False),
    Column("run_id", Integer, ForeignKey("ingest_runs.id")),
    Column("ingested_at", DateTime, nullable=False),
    # set when the object was seen again with other bytes (reported, never re-read)
    Column("changed_etag", String(128)),
    Column("changed_size", BigInteger),
    Column("changed_seen_at", DateTime),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("object_id", Integer, ForeignKey("ingest_objects.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("claim", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("user_label", String(16), nullable=False),
    Column("model", Text),
    Column("prediction", Text),  # JSON as sent (a label or {label: p})
    Column("datetime", DateTime, nullable=False),  # when the feedback was given (first)
    Column("last_datetime", DateTime, nullable=False),  # latest duplicate's datetime
    Column("request_id", String(MAX_META_CHARS)),
    Column("model_version", String(MAX_META_CHARS)),
    Column("slot", String(MAX_META_CHARS)),
    Column("pair_key", String(32), nullable=False),  # hash of normalised claim + evidence
    Column("votes", Integer, nullable=False),  # this line plus its duplicates
    Column("leaked", Boolean, nullable=False),  # claim is in a benchmark test set
    Column("conflict", Boolean, nullable=False),  # the pair has more than one label
    Column("ingested_at", DateTime, nullable=False),
    # feedback quality (tasks/feedback): whether the label is likely wrong and why
    # (label_issue, client_disagreement); flagged rows are kept but not trained on
    Column("flagged", Boolean, nullable=False, server_default=false()),
    Column("flag_reason", String(64)),
    Column("label_quality", Float),  # the scoring model's probability of the user's label
    Column("label_probs", Text),  # JSON {label: p} of the scoring model
    Column("scored_by", String(MAX_META_CHARS)),  # the model version that scored it
    Column("scored_at", DateTime),
    # one row per (pair, label): duplicates add votes; the index serves pair lookups too
    UniqueConstraint("pair_key", "user_label", name="uq_feedback_pair_label"),
    Index("ix_feedback_ingested_at", "ingested_at"),
)

queries = Table(
    "queries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("object_id", Integer, ForeignKey("ingest_objects.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("request_id", String(MAX_META_CHARS)),
    Column("dedupe_key", String(160), nullable=False, unique=True),
    Column("datetime", DateTime, nullable=False),
    Column("claim", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("model_version", String(MAX_META_CHARS)),
    Column("slot", String(MAX_META_CHARS)),
    Column("prediction", String(16), nullable=False),
    Column("probabilities", Text, nullable=False),  # JSON {label: p}
    Column("latency_ms", Float),
    Column("ingested_at", DateTime, nullable=False),
    Index("ix_queries_datetime", "datetime"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("object_id", Integer, ForeignKey("ingest_objects.id"), nullable=False),
    Column("uri", String(1024), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("detail", Text),
    Column("raw", Text, nullable=False),  # truncated to ingest.raw_line_max_chars
    Column("ingested_at", DateTime, nullable=False),
    Index("ix_quarantine_reason", "reason"),
)

validation_results = Table(
    "validation_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("object_id", Integer, ForeignKey("ingest_objects.id"), nullable=False),
    Column("chunk", Integer, nullable=False),
    Column("suite", String(64), nullable=False),
    Column("suite_version", Integer, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("unexpected_rows", Integer, nullable=False),
    Column("results", Text, nullable=False),  # JSON: per expectation, success and counts
    Column("validated_at", DateTime, nullable=False),
)

training_marks = Table(
    "training_marks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("note", Text),
)


# One row per retrain / promote / rollback run: what was tried, why, and how it ended.
promotions = Table(
    "promotions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # retrain | promote | rollback
    Column("version", String(32)),  # the candidate (or, for a rollback, the restored one)
    Column("previous_version", String(32)),  # the champion before
    Column("outcome", String(32), nullable=False),  # promoted | gate_failed | rolled_back | ...
    Column("trigger", Text),  # JSON: causes and reasons of the decision that started it
    Column("gate", Text),  # JSON: passed, reasons, table, thresholds
    Column("bake", Text),  # JSON: bake figures per endpoint
    Column("data", Text),  # JSON: training-set counts and digests
    Column("detail", Text),  # one line: why it ended so
    Column("cost_usd", Float),  # estimated cost of the training run
    Column("flow_run_id", String(64)),
    Column("mlflow_run_ids", Text),  # JSON: {"train": ..., "validate": ...}
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Index("ix_promotions_started", "started_at"),
)

# Named locks with an owner and an expiry (one retrain / promotion at a time).
locks = Table(
    "locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(256), nullable=False),  # host:pid:token
    Column("acquired_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)


# Who sent each feedback row's lines: one row per (pair, label, authenticated client) with
# that client's lines (votes). Anonymous lines (credentials off, or lines written before
# client ids existed) have no row here: a feedback row's anonymous votes are its votes
# minus these.
feedback_clients = Table(
    "feedback_clients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pair_key", String(32), nullable=False),
    Column("user_label", String(16), nullable=False),
    Column("client_id", String(MAX_META_CHARS), nullable=False),
    Column("votes", Integer, nullable=False),
    Column("first_datetime", DateTime, nullable=False),
    Column("last_datetime", DateTime, nullable=False),
    UniqueConstraint("pair_key", "user_label", "client_id", name="uq_feedback_clients"),
    Index("ix_feedback_clients_client", "client_id"),
)

# Clients whose feedback lines training and the trigger ignore (`citeops feedback exclude`).
excluded_clients = Table(
    "excluded_clients",
    metadata,
    Column("client_id", String(MAX_META_CHARS), primary_key=True),
    Column("excluded_at", DateTime, nullable=False),
    Column("lines", Integer, nullable=False),  # its lines in the store when it was excluded
    Column("note", Text),
    # set when an operator let it back in (`citeops feedback include`): no longer excluded,
    # and never excluded automatically again (feedback.auto_exclude)
    Column("readmitted_at", DateTime),
)

# One row per retraining decision of the trigger (``citeops trigger``, the monitor flow):
# whether to retrain, why, from what, and the retraining run it started.
retrain_decisions = Table(
    "retrain_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decided_at", DateTime, nullable=False),
    Column("retrain", Boolean, nullable=False),
    Column("causes", Text, nullable=False),  # JSON list: feedback, drift, forced
    Column("reasons", Text, nullable=False),  # JSON list of sentences
    Column("inputs", Text, nullable=False),  # JSON: every input of the rule
    Column("deployment", Text),  # JSON: the retraining flow run started, or why none
    Column("mlflow_run_id", String(64)),  # the (drift) run the decision was logged to
    Index("ix_retrain_decisions_decided", "decided_at"),
)


def utc_naive(value: datetime) -> datetime:
    """An aware datetime in UTC without tzinfo; naive values are taken as UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def make_engine(settings: Settings) -> Engine:
    """An engine for ``settings.store_url``; SQLite gets WAL and a busy timeout so a reader
    (drift, stats) never blocks on a long ingest transaction."""
    url = settings.store_url or f"sqlite:///{settings.home / 'citeops.db'}"
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(
            url, connect_args={"timeout": settings.ingest.sqlite_busy_timeout_seconds}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: random-key index inserts
            cursor.close()

        return engine
    return _create_engine(url, pool_pre_ping=True)


def _create_engine(url: str, **options: Any) -> Engine:
    """:func:`create_engine` with ``hide_parameters`` (a failed statement's error, printed
    or logged, shows its SQL but never its values: users' claims and evidence), and a
    URL SQLAlchemy cannot use as a :class:`StoreError`.

    Raises:
        StoreError: the URL is malformed or names a database or driver that is not
            installed (the message masks a password).
    """
    try:
        # an error's message never carries the statement's parameters (users' texts)
        return create_engine(url, hide_parameters=True, **options)
    except (ArgumentError, NoSuchModuleError) as error:
        raise StoreError(
            f"setting store_url (CITEOPS_STORE_URL) {redact_url(url)!r}: {error}; use "
            "sqlite:///<path> or postgresql+psycopg://<user>@<host>/<database>"
        ) from None


def alembic_config(conn: Connection | None = None) -> Config:
    """The Alembic configuration of the store, built in code: the migrations folder in
    this package and, when given, the connection the migrations run on
    (``migrations/env.py`` reads it from ``attributes``)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this citeops knows."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migration under {MIGRATIONS_DIR}"
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the store is at (``None``: no Alembic revision recorded yet)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _legacy_version(conn: Connection) -> int | None:
    """The highest version in the previous code's ``schema_version`` table, if it has one."""
    if not inspect(conn).has_table(LEGACY_VERSION_TABLE):
        return None
    found = conn.execute(text(f"SELECT max(version) FROM {LEGACY_VERSION_TABLE}")).scalar()
    return None if found is None else int(found)


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _check_known(engine: Engine, revision: str | None) -> None:
    """Raises StoreError when ``revision`` is one this citeops does not have."""
    from alembic.util import CommandError

    if revision is None:
        return
    try:
        _scripts().get_revision(revision)
    except CommandError:
        raise _newer_than_this(engine, f"schema revision {revision}") from None


def _newer_than_this(engine: Engine, found: str) -> StoreError:
    return StoreError(
        f"curated store {_describe(engine)} has {found}, newer than this citeops (its "
        f"newest is revision {head_revision()}); upgrade citeops"
    )


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that only one migrator at a time holds: PostgreSQL's
    transaction-scoped advisory lock, SQLite's write lock (``BEGIN IMMEDIATE``, waiting up
    to the busy timeout). Released at commit or rollback."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def _migrate(engine: Engine) -> str:
    from alembic import command

    with _migration_lock(engine) as conn:
        revision = current_revision(conn)
        _check_known(engine, revision)
        if revision == head_revision():  # another process migrated while we waited
            return revision
        config = alembic_config(conn)
        if revision is None and (legacy := _legacy_version(conn)) is not None:
            if legacy not in LEGACY_REVISIONS:
                raise _newer_than_this(engine, f"schema version {legacy} (before Alembic)")
            command.stamp(config, LEGACY_REVISIONS[legacy])
        command.upgrade(config, "head")
    return head_revision()


def upgrade(engine: Engine) -> str:
    """Bring the store to the newest revision; returns it. Safe to run from several
    processes at once: the first migrates under a lock, the others wait and find the work
    done. A store already at the head costs one read and takes no lock.

    Raises:
        StoreError: the store was written by a newer citeops, or cannot be reached.
    """
    try:
        with engine.connect() as conn:
            revision = current_revision(conn)
        _check_known(engine, revision)
        return revision if revision == head_revision() else _migrate(engine)
    except (OperationalError, ProgrammingError) as error:
        kind = StoreUnreachable if _connection_lost(error) else StoreError
        raise kind(
            f"cannot open the curated store {_describe(engine)}: "
            f"{str(error.orig).strip().splitlines()[0] if error.orig else error}"
        ) from None


def _driver_connection_errors() -> tuple[type[BaseException], ...]:
    """psycopg's own connection errors, raised unwrapped by code that uses the driver
    directly (``COPY``); empty when psycopg was never imported."""
    if "psycopg" not in sys.modules:
        return ()
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError)


def _first_line(error: BaseException) -> str:
    """The first line of the driver's message (a reason, never the SQL or its values),
    at most 200 characters."""
    orig = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:200]


def _connection_lost(error: BaseException) -> bool:
    """Whether ``error`` says the server is gone: SQLAlchemy invalidated the connection,
    or the driver lost it (no SQLSTATE: refused, closed) or the server ended it
    (SQLSTATE class 08 connection exception, 57P operator intervention: shutdown)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    orig = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    if not isinstance(orig, _driver_connection_errors()):
        return False
    sqlstate = getattr(orig, "sqlstate", None) or ""
    return not sqlstate or sqlstate.startswith(("08", "57P"))


def store_failure(engine: Engine, error: BaseException) -> StoreError | None:
    """The one-line :class:`StoreError` for a database error ``error`` met while using
    ``engine``, or ``None`` when ``error`` is not one (a bug, or a constraint the caller
    handles): a lost or refused connection is :class:`StoreUnreachable`; another
    operational error of the database (SQLite: locked, disk full) a :class:`StoreError`.
    The message names the store (password masked) and the driver's reason only, never
    the statement or its values."""
    if _connection_lost(error):
        return StoreUnreachable(
            f"the curated store {_describe(engine)} is unreachable (connection lost: "
            f"{_first_line(error)})"
        )
    if isinstance(error, OperationalError | InterfaceError):
        return StoreError(f"the curated store {_describe(engine)} failed: {_first_line(error)}")
    return None


@contextmanager
def open_store(settings: Settings) -> Iterator[Engine]:
    """The store's engine with its schema brought up to date; disposed on exit.

    Raises:
        StoreUnreachable: the server cannot be reached or dropped the connection while
            the block used it (the block's open transaction is rolled back).
        StoreError: the store cannot be opened or another database failure.
    """
    engine = make_engine(settings)
    try:
        upgrade(engine)
        yield engine
    except (DBAPIError, *_driver_connection_errors()) as error:
        failure = store_failure(engine, error)
        if failure is None:
            raise
        log.debug("store error: %s", type(error).__name__)
        raise failure from None
    finally:
        engine.dispose()


def retry_unreachable(
    action: Callable[[], T], what: str, delays: Sequence[float] = UNREACHABLE_RETRY_DELAYS
) -> T:
    """Run ``action`` (one short transaction through :func:`open_store`, which commits
    nothing when it raises) and run it again after each pause of ``delays`` while the
    store is unreachable, so a server restart during a bookkeeping write (a promotion
    record, the lock, a decision) costs seconds, not the run.

    Raises:
        StoreUnreachable: the store is still unreachable after the last pause.
    """
    for delay in (*delays, None):
        try:
            return action()
        except StoreUnreachable as error:
            if delay is None:
                raise
            log.warning("%s not written: %s; trying again in %.0f s", what, error, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
