"""Writing one ingested object into the curated store, inside the caller's transaction.

The caller (tasks.ingest.pipeline) opens one transaction per object: the manifest row and
every row that the object's lines became are committed together or not at all, which is
what makes a killed ingest safe to rerun.

Feedback rules, per line in file order:

- the same normalised claim + evidence + label as a stored row: a **duplicate**; it is not
  stored again but adds a vote to that row (the ``majority`` conflict rule counts votes,
  ``latest`` looks at the latest datetime);
- the same pair as a stored row with another label: stored as a **conflict**, and every row
  of that pair is flagged ``conflict`` (kept out of training until the rule resolves it);
- otherwise **accepted**. A row whose normalised claim is in a benchmark test set is stored
  with ``leaked`` set and never used for training (it is still accepted or a conflict).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, case, select, update
from sqlalchemy.engine import Connection

from citeops.tasks.data.multivers import normalise_claim
from citeops.tasks.ingest.parse import Reject, raw_text
from citeops.tasks.store.schema import (
    feedback,
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
    """What the lines of one object (or chunk) became."""

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


def pair_key(claim: str, evidence: str) -> str:
    """Identity of a (claim, evidence) pair: case and whitespace folded, then hashed."""
    text = normalise_claim(claim) + "\x1f" + normalise_claim(evidence)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert many rows given as tuples in ``columns`` order. On SQLite the rows go straight
    to the driver (SQLAlchemy's per-row parameter processing costs more than the insert
    itself; datetimes must come through :func:`datetime_param`); elsewhere through
    SQLAlchemy."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
    conn.exec_driver_sql(sql, list(rows))


def datetime_param(conn: Connection) -> Callable[[datetime], Any]:
    """How a datetime is passed to :func:`bulk_insert`: SQLAlchemy's SQLite text format
    on SQLite, the object itself elsewhere."""
    if conn.dialect.name == "sqlite":
        return lambda value: value.isoformat(sep=" ", timespec="microseconds")
    return lambda value: value


def add_pair_keys(rows: Sequence[dict[str, Any]], leaked_claims: frozenset[str]) -> None:
    """Give each feedback row its ``pair_key`` and ``leaked`` flag (claim in a benchmark
    test set), both from the normalised texts (:func:`normalise_claim`, inlined here: this
    runs once per line)."""
    blake2b = hashlib.blake2b
    evidence_forms: dict[str, str] = {}  # the same evidence recurs (one paper, many claims)
    for row in rows:
        norm_claim = " ".join(row["claim"].casefold().split())
        evidence = row["evidence"]
        norm_evidence = evidence_forms.get(evidence)
        if norm_evidence is None:
            norm_evidence = evidence_forms[evidence] = " ".join(evidence.casefold().split())
        text = norm_claim + "\x1f" + norm_evidence
        row["pair_key"] = blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        row["leaked"] = norm_claim in leaked_claims


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


def store_rejects(
    conn: Connection,
    object_id: int,
    uri: str,
    rejects: Sequence[Reject],
    raw_limit: int,
    now: datetime,
) -> None:
    if not rejects:
        return
    dt = datetime_param(conn)
    at = dt(now)
    bulk_insert(
        conn,
        quarantine,
        ("object_id", "uri", "line_no", "reason", "detail", "raw", "ingested_at"),
        [
            (object_id, uri, r.line_no, r.reason, r.detail[:500], raw_text(r.raw, raw_limit), at)
            for r in sorted(rejects, key=lambda r: r.line_no)
        ],
    )


def store_validation(
    conn: Connection, object_id: int, chunk: int, result: dict[str, Any], now: datetime
) -> None:
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


def _known_labels(conn: Connection, keys: Iterable[str]) -> dict[str, set[str]]:
    """``pair_key -> labels already stored`` for the given pair keys."""
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
    stmt = select(feedback.c.pair_key, feedback.c.user_label).where(
        feedback.c.pair_key.in_(bindparam("keys", expanding=True))
    )
    for start in range(0, len(keys), LOOKUP_BATCH):
        for key, label in conn.execute(stmt, {"keys": keys[start : start + LOOKUP_BATCH]}):
            known.setdefault(key, set()).add(label)
    return known


def store_feedback(
    conn: Connection,
    object_id: int,
    rows: Sequence[dict[str, Any]],
    now: datetime,
) -> StoreCounts:
    """Store validated feedback rows (in line order, with :func:`add_pair_keys` applied);
    returns their counts (no lines or quarantined: the caller adds those)."""
    counts = StoreCounts()
    if not rows:
        return counts
    keyed = [(row["pair_key"], row["leaked"], row) for row in rows]
    known = _known_labels(conn, {k for k, _, _ in keyed})
    dt = datetime_param(conn)
    at = dt(now)
    inserts: list[tuple[Any, ...]] = []
    votes: dict[tuple[str, str], list[Any]] = {}  # (pair, label) -> [extra votes, latest]
    conflicted: set[str] = set()
    for key, leaked, row in keyed:
        label = row["user_label"]
        labels = known.get(key)
        if labels is not None and label in labels:
            counts.duplicates += 1
            entry = votes.get((key, label))
            if entry is None:
                votes[(key, label)] = [1, row["datetime"]]
            else:
                entry[0] += 1
                entry[1] = max(entry[1], row["datetime"])
            continue
        if labels is None:
            known[key] = {label}
            counts.accepted += 1
            conflict = False
        else:
            labels.add(label)
            conflicted.add(key)
            counts.conflicts += 1
            conflict = True
        counts.leaked += leaked
        when = dt(row["datetime"])
        inserts.append(
            (
                object_id,
                row["line_no"],
                row["claim"],
                row["evidence"],
                label,
                row["model"],
                row["prediction"],
                when,
                when,
                row["request_id"],
                row["model_version"],
                row["slot"],
                key,
                1,
                leaked,
                conflict,
                at,
            )
        )
    bulk_insert(conn, feedback, FEEDBACK_COLUMNS, inserts)
    if votes:
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
            [{"k": k, "l": lab, "n": n, "dt": dt} for (k, lab), (n, dt) in votes.items()],
        )
    if conflicted:
        keys = sorted(conflicted)
        stmt = (
            update(feedback)
            .where(feedback.c.pair_key.in_(bindparam("keys", expanding=True)))
            .values(conflict=True)
        )
        for start in range(0, len(keys), LOOKUP_BATCH):
            conn.execute(stmt, {"keys": keys[start : start + LOOKUP_BATCH]})
    return counts


def store_queries(
    conn: Connection, object_id: int, rows: Sequence[dict[str, Any]], now: datetime
) -> StoreCounts:
    """Store validated query rows; a request_id already stored is a duplicate."""
    counts = StoreCounts()
    if not rows:
        return counts
    keys = list(dict.fromkeys(row["request_id"] for row in rows))
    seen: set[str] = set()
    stmt = select(queries.c.dedupe_key).where(
        queries.c.dedupe_key.in_(bindparam("keys", expanding=True))
    )
    for start in range(0, len(keys), LOOKUP_BATCH):
        seen.update(conn.execute(stmt, {"keys": keys[start : start + LOOKUP_BATCH]}).scalars())
    dt = datetime_param(conn)
    at = dt(now)
    inserts = []
    for row in rows:
        key = row["request_id"]
        if key in seen:
            counts.duplicates += 1
            continue
        seen.add(key)
        counts.accepted += 1
        inserts.append(
            (
                object_id,
                row["line_no"],
                key,
                key,
                dt(row["datetime"]),
                row["claim"],
                row["evidence"],
                row["model_version"],
                row["slot"],
                row["prediction"],
                orjson.dumps(row["probabilities"]).decode(),
                row["latency_ms"],
                at,
            )
        )
    bulk_insert(conn, queries, QUERY_COLUMNS, inserts)
    return counts
