"""Tables of the curated store and the versioned migrations that create and upgrade them.

The schema version lives in the ``schema_version`` table; :func:`upgrade` applies every
migration newer than the recorded version, each in its own transaction, and is run by the
tool every time it opens the store (``open_store``), so nobody creates tables by hand.

Datetimes are stored as naive UTC (``DateTime`` without time zone) on both SQLite and
PostgreSQL; :func:`utc_naive` converts aware values on the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


class StoreError(CiteopsError):
    """The curated store cannot be opened or is newer than this version of citeops."""


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime, nullable=False),
)

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
    Column("request_id", String(128)),
    Column("model_version", String(128)),
    Column("slot", String(128)),
    Column("pair_key", String(32), nullable=False),  # hash of normalised claim + evidence
    Column("votes", Integer, nullable=False),  # this line plus its duplicates
    Column("leaked", Boolean, nullable=False),  # claim is in a benchmark test set
    Column("conflict", Boolean, nullable=False),  # the pair has more than one label
    Column("ingested_at", DateTime, nullable=False),
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
    Column("request_id", String(128)),
    Column("dedupe_key", String(160), nullable=False, unique=True),
    Column("datetime", DateTime, nullable=False),
    Column("claim", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("model_version", String(128)),
    Column("slot", String(128)),
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
    Column("client_id", String(128), nullable=False),
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
    Column("client_id", String(128), primary_key=True),
    Column("excluded_at", DateTime, nullable=False),
    Column("lines", Integer, nullable=False),  # its lines in the store when it was excluded
    Column("note", Text),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(
        conn,
        tables=[
            ingest_runs,
            ingest_objects,
            feedback,
            queries,
            quarantine,
            validation_results,
            training_marks,
        ],
    )


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[promotions, locks])


def _v3(conn: Connection) -> None:
    metadata.create_all(conn, tables=[feedback_clients, excluded_clients])


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2, 3: _v3}
SCHEMA_VERSION = max(MIGRATIONS)


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
    """:func:`create_engine`, with a URL SQLAlchemy cannot use as a :class:`StoreError`.

    Raises:
        StoreError: the URL is malformed or names a database or driver that is not
            installed (the message masks a password).
    """
    try:
        return create_engine(url, **options)
    except (ArgumentError, NoSuchModuleError) as error:
        from citeops.tasks.redact import redact_url

        raise StoreError(
            f"setting store_url (CITEOPS_STORE_URL) {redact_url(url)!r}: {error}; use "
            "sqlite:///<path> or postgresql+psycopg://<user>@<host>/<database>"
        ) from None


def current_version(conn: Connection) -> int:
    schema_version.create(conn, checkfirst=True)
    return int(conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar())


def upgrade(engine: Engine) -> int:
    """Apply every pending migration; returns the schema version now in force.

    Raises:
        StoreError: the store was written by a newer citeops, or cannot be reached.
    """
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                version = current_version(conn)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"curated store {engine.url.render_as_string(hide_password=True)} has "
                        f"schema version {version}, newer than this citeops ({SCHEMA_VERSION}); "
                        "upgrade citeops"
                    )
                for number in sorted(v for v in MIGRATIONS if v > version):
                    MIGRATIONS[number](conn)
                    conn.execute(
                        schema_version.insert().values(version=number, applied_at=utc_now())
                    )
                return max(version, SCHEMA_VERSION)
        except IntegrityError:
            if attempt == 2:  # another process migrated at the same moment: read again
                raise
        except (OperationalError, ProgrammingError) as error:
            if attempt == 2:
                raise StoreError(
                    f"cannot open the curated store "
                    f"{engine.url.render_as_string(hide_password=True)}: "
                    f"{str(error.orig).strip().splitlines()[0] if error.orig else error}"
                ) from None
    return SCHEMA_VERSION


@contextmanager
def open_store(settings: Settings) -> Iterator[Engine]:
    """The store's engine with its schema brought up to date; disposed on exit."""
    engine = make_engine(settings)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
