"""Writing ingested rows into the curated store, inside the caller's transaction.

The store stores: it inserts manifest, feedback, query, quarantine and validation rows,
says what is already stored, adds votes and flags conflicts when told to. Which line
becomes what (accepted, duplicate, conflict, quarantined) is ingestion's decision
(:mod:`citeops.tasks.ingest.dedupe`), made in one transaction per object: the manifest
row and every row the object's lines became are committed together or not at all, which
is what makes a killed ingest safe to rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Table, bindparam, case, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from citeops.tasks.store.schema import (
    feedback,
    feedback_clients,
    ingest_objects,
    quarantine,
    queries,
    validation_results,
)

LOOKUP_BATCH = 2000
FEEDBACK_COLUMNS = (
    "object_id",
    "line_no",
    "claim",
    "evidence",
    "user_label",
    "model",
    "prediction",
    "datetime",
    "last_datetime",
    "request_id",
    "model_version",
    "slot",
    "pair_key",
    "votes",
    "leaked",
    "conflict",
    "ingested_at",
)
QUERY_COLUMNS = (
    "object_id",
    "line_no",
    "request_id",
    "dedupe_key",
    "datetime",
    "claim",
    "evidence",
    "model_version",
    "slot",
    "prediction",
    "probabilities",
    "latency_ms",
    "ingested_at",
)


@dataclass
class StoreCounts:
    """What the lines of one object (or chunk) became: the counts of its manifest row."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    leaked: int = 0

    def add(self, other: StoreCounts) -> None:
        for name in ("lines", "accepted", "duplicates", "conflicts", "quarantined", "leaked"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def balanced(self) -> bool:
        total = self.accepted + self.duplicates + self.conflicts + self.quarantined
        return total == self.lines


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert many rows given as tuples in ``columns`` order. On SQLite the rows go straight
    to the driver (SQLAlchemy's per-row parameter processing costs more than the insert
    itself; datetimes must come through :func:`datetime_param`); on PostgreSQL through
    psycopg 3 they are streamed with ``COPY`` (:func:`copy_rows`); elsewhere through
    SQLAlchemy.

    Raises:
        sqlalchemy.exc.IntegrityError: a row breaks a unique constraint (on every store).
    """
    if not rows:
        return
    if _copies(conn):
        copy_rows(conn, table, columns, rows)
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
    conn.exec_driver_sql(sql, list(rows))


def _copies(conn: Connection) -> bool:
    """Whether ``conn`` is PostgreSQL through psycopg 3 (``COPY`` and arrays available)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def copy_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Stream ``rows`` into ``table`` with PostgreSQL's ``COPY ... FROM STDIN`` on the
    connection's own psycopg 3 connection, inside the caller's transaction (an order of
    magnitude faster than row-by-row ``INSERT``). psycopg adapts each value as it would
    for a parameter (datetimes, booleans, ``None`` as NULL).

    Raises:
        sqlalchemy.exc.IntegrityError: a row breaks a unique constraint (as an ``INSERT``
            through SQLAlchemy would raise it, so callers handle both stores alike).
    """
    import psycopg  # only PostgreSQL stores get here

    names = ", ".join(f'"{c}"' for c in columns)
    statement = f"COPY {table.name} ({names}) FROM STDIN"
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.IntegrityError as error:
        raise IntegrityError(statement, None, error) from None


def datetime_param(conn: Connection) -> Callable[[datetime], Any]:
    """How a datetime is passed to :func:`bulk_insert`: SQLAlchemy's SQLite text format
    on SQLite, the object itself elsewhere."""
    if conn.dialect.name == "sqlite":
        return lambda value: value.isoformat(sep=" ", timespec="microseconds")
    return lambda value: value


def begin_object(conn: Connection, uri: str, kind: str, run_id: int | None, now: datetime) -> int:
    """Insert the object's manifest row (counts filled in by :func:`finish_object`)."""
    result = conn.execute(
        ingest_objects.insert().values(
            uri=uri,
            kind=kind,
            size=0,
            etag="",
            lines=0,
            accepted=0,
            duplicates=0,
            conflicts=0,
            quarantined=0,
            leaked=0,
            run_id=run_id,
            ingested_at=now,
        )
    )
    return int(result.inserted_primary_key[0])


def finish_object(
    conn: Connection,
    object_id: int,
    counts: StoreCounts,
    size: int,
    etag: str,
    mtime_ns: int | None,
) -> None:
    """Complete the manifest row of :func:`begin_object`: the bytes' identity and counts."""
    conn.execute(
        update(ingest_objects)
        .where(ingest_objects.c.id == object_id)
        .values(
            size=size,
            etag=etag,
            mtime_ns=mtime_ns,
            lines=counts.lines,
            accepted=counts.accepted,
            duplicates=counts.duplicates,
            conflicts=counts.conflicts,
            quarantined=counts.quarantined,
            leaked=counts.leaked,
        )
    )


class QuarantineRow(NamedTuple):
    """One quarantined line as stored: texts already fit for the store (no NUL)."""

    line_no: int
    reason: str
    detail: str
    raw: str


def insert_quarantine(
    conn: Connection, object_id: int, uri: str, rows: Sequence[QuarantineRow], now: datetime
) -> None:
    """Insert quarantined lines of one object (in the order given)."""
    if not rows:
        return
    at = datetime_param(conn)(now)
    bulk_insert(
        conn,
        quarantine,
        ("object_id", "uri", "line_no", "reason", "detail", "raw", "ingested_at"),
        [(object_id, uri, r.line_no, r.reason, r.detail, r.raw, at) for r in rows],
    )


def insert_validation(
    conn: Connection, object_id: int, chunk: int, result: dict[str, Any], now: datetime
) -> None:
    """Insert one chunk's validation result (the validator's compact summary)."""
    conn.execute(
        validation_results.insert().values(
            object_id=object_id,
            chunk=chunk,
            suite=result["suite"],
            suite_version=result["suite_version"],
            success=result["success"],
            rows=result["rows"],
            unexpected_rows=result["unexpected_rows"],
            results=orjson.dumps(result["expectations"]).decode(),
            validated_at=now,
        )
    )


def known_labels(conn: Connection, keys: Iterable[str]) -> dict[str, set[str]]:
    """``pair_key -> labels already stored`` for the given feedback pair keys."""
    known: dict[str, set[str]] = {}
    keys = list(keys)
    if conn.dialect.name == "sqlite":  # plain placeholders: rendering expanding binds costs
        for start in range(0, len(keys), LOOKUP_BATCH):
            batch = keys[start : start + LOOKUP_BATCH]
            sql = (
                "SELECT pair_key, user_label FROM feedback "
                f"WHERE pair_key IN ({', '.join('?' * len(batch))})"
            )
            for key, label in conn.exec_driver_sql(sql, tuple(batch)):
                known.setdefault(key, set()).add(label)
        return known
    if _copies(conn):  # one array parameter instead of thousands of placeholders
        sql = "SELECT pair_key, user_label FROM feedback WHERE pair_key = ANY(%(keys)s)"
        for key, label in conn.exec_driver_sql(sql, {"keys": keys}):
            known.setdefault(key, set()).add(label)
        return known
    stmt = select(feedback.c.pair_key, feedback.c.user_label).where(
        feedback.c.pair_key.in_(bindparam("keys", expanding=True))
    )
    for start in range(0, len(keys), LOOKUP_BATCH):
        for key, label in conn.execute(stmt, {"keys": keys[start : start + LOOKUP_BATCH]}):
            known.setdefault(key, set()).add(label)
    return known


def known_query_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    """The given query dedupe keys that are already stored."""
    keys = list(keys)
    seen: set[str] = set()
    if _copies(conn):
        sql = "SELECT dedupe_key FROM queries WHERE dedupe_key = ANY(%(keys)s)"
        seen.update(key for (key,) in conn.exec_driver_sql(sql, {"keys": keys}))
        return seen
    stmt = select(queries.c.dedupe_key).where(
        queries.c.dedupe_key.in_(bindparam("keys", expanding=True))
    )
    for start in range(0, len(keys), LOOKUP_BATCH):
        seen.update(conn.execute(stmt, {"keys": keys[start : start + LOOKUP_BATCH]}).scalars())
    return seen


def insert_feedback(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert feedback rows given as tuples in :data:`FEEDBACK_COLUMNS` order (datetimes
    through :func:`datetime_param`)."""
    bulk_insert(conn, feedback, FEEDBACK_COLUMNS, rows)


def insert_queries(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert query rows given as tuples in :data:`QUERY_COLUMNS` order (datetimes through
    :func:`datetime_param`)."""
    bulk_insert(conn, queries, QUERY_COLUMNS, rows)


def add_votes(conn: Connection, votes: Mapping[tuple[str, str], tuple[int, datetime]]) -> None:
    """``(pair_key, label) -> (extra votes, latest datetime)``: add the votes to the stored
    row and move its ``last_datetime`` forward when the latest is later."""
    if not votes:
        return
    if _copies(conn):  # one statement over arrays instead of one UPDATE per pair
        _add_votes_postgresql(conn, votes)
        return
    conn.execute(
        update(feedback)
        .where(feedback.c.pair_key == bindparam("k"), feedback.c.user_label == bindparam("l"))
        .values(
            votes=feedback.c.votes + bindparam("n"),
            last_datetime=case(
                (feedback.c.last_datetime < bindparam("dt"), bindparam("dt")),
                else_=feedback.c.last_datetime,
            ),
        ),
        [{"k": k, "l": label, "n": n, "dt": dt} for (k, label), (n, dt) in votes.items()],
    )


def _add_votes_postgresql(
    conn: Connection, votes: Mapping[tuple[str, str], tuple[int, datetime]]
) -> None:
    """:func:`add_votes` as one ``UPDATE ... FROM unnest(...)`` (pairs are distinct)."""
    keys, labels, extra, latest = [], [], [], []
    for (key, label), (n, when) in votes.items():
        keys.append(key)
        labels.append(label)
        extra.append(n)
        latest.append(when)
    conn.exec_driver_sql(
        "UPDATE feedback AS f SET votes = f.votes + v.n, "
        "last_datetime = GREATEST(f.last_datetime, v.dt) "
        "FROM unnest(%(k)s::text[], %(l)s::text[], %(n)s::int[], %(dt)s::timestamp[]) "
        "AS v(k, l, n, dt) WHERE f.pair_key = v.k AND f.user_label = v.l",
        {"k": keys, "l": labels, "n": extra, "dt": latest},
    )


# (pair_key, label, client_id) -> (lines, earliest datetime, latest datetime)
ClientVotes = dict[tuple[str, str, str], tuple[int, datetime, datetime]]


def add_client_votes(conn: Connection, votes: ClientVotes) -> None:
    """Add each client's lines to its ``feedback_clients`` row (made on its first line),
    with an upsert (the store is SQLite or PostgreSQL)."""
    if not votes:
        return
    rows = [
        {"pair_key": k, "user_label": label, "client_id": client, "votes": n, "first": f, "last": t}
        for (k, label, client), (n, f, t) in votes.items()
    ]
    table = feedback_clients
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    stmt = insert(table).values(
        pair_key=bindparam("pair_key"),
        user_label=bindparam("user_label"),
        client_id=bindparam("client_id"),
        votes=bindparam("votes"),
        first_datetime=bindparam("first"),
        last_datetime=bindparam("last"),
    )
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["pair_key", "user_label", "client_id"],
        set_={
            "votes": table.c.votes + new.votes,
            "first_datetime": case(
                (new.first_datetime < table.c.first_datetime, new.first_datetime),
                else_=table.c.first_datetime,
            ),
            "last_datetime": case(
                (new.last_datetime > table.c.last_datetime, new.last_datetime),
                else_=table.c.last_datetime,
            ),
        },
    )
    conn.execute(stmt, rows)


def flag_conflicts(conn: Connection, pair_keys: Iterable[str]) -> None:
    """Mark every stored row of the given pairs as in conflict."""
    keys = sorted(pair_keys)
    if _copies(conn) and keys:
        sql = "UPDATE feedback SET conflict = true WHERE pair_key = ANY(%(keys)s)"
        conn.exec_driver_sql(sql, {"keys": keys})
        return
    stmt = (
        update(feedback)
        .where(feedback.c.pair_key.in_(bindparam("keys", expanding=True)))
        .values(conflict=True)
    )
    for start in range(0, len(keys), LOOKUP_BATCH):
        conn.execute(stmt, {"keys": keys[start : start + LOOKUP_BATCH]})
