"""Committing: one object's rows, quarantine, validation results and manifest row in one
transaction, and the run's own row in ``ingest_runs``.

Guarantees:

- **exact accounting**: every line of a committed object is accepted, a duplicate, a
  conflict or quarantined (with its reason); an object whose counts do not balance is
  never committed;
- **crash-safe**: an object's manifest row and all its rows commit together, so a process
  killed at any point leaves whole objects or nothing, and a rerun completes the work
  exactly once;
- **concurrent runs**: an object that another run committed first is skipped (nothing of
  it written) and reported, never counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from citeops.tasks.ingest.dedupe import store_feedback, store_queries
from citeops.tasks.ingest.parse import Reject, raw_text, store_text
from citeops.tasks.ingest.report import TAKEN_BY_ANOTHER_RUN, IngestReport, ObjectResult
from citeops.tasks.store.schema import StoreError, ingest_objects, ingest_runs, utc_now
from citeops.tasks.store.writer import (
    QuarantineRow,
    StoreCounts,
    begin_object,
    finish_object,
    insert_quarantine,
    insert_validation,
)

if TYPE_CHECKING:
    from datetime import datetime

    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.read import PreparedChunk
    from citeops.tasks.ingest.sources import LogObject

DETAIL_MAX_CHARS = 500


def quarantine_rows(rejects: Iterable[Reject], raw_limit: int) -> list[QuarantineRow]:
    """Rejects as stored quarantine rows, in line order: raw text cut to ``raw_limit``
    characters, detail to :data:`DETAIL_MAX_CHARS`, NUL escaped in both."""
    return [
        QuarantineRow(
            r.line_no,
            r.reason,
            store_text(r.detail[:DETAIL_MAX_CHARS]),
            raw_text(r.raw, raw_limit),
        )
        for r in sorted(rejects, key=lambda r: r.line_no)
    ]


def _store_chunk(
    conn: Connection,
    obj: LogObject,
    object_id: int,
    number: int,
    chunk: PreparedChunk,
    raw_limit: int,
    now: datetime,
) -> StoreCounts:
    """Store one prepared chunk; its counts, lines and quarantined included."""
    insert_quarantine(conn, object_id, obj.uri, quarantine_rows(chunk.rejects, raw_limit), now)
    if chunk.validation is not None:
        insert_validation(conn, object_id, number, chunk.validation, now)
    if obj.kind == "queries":
        stored = store_queries(conn, object_id, chunk.rows, now)
    else:
        stored = store_feedback(conn, object_id, chunk.rows, now)
    stored.lines = chunk.lines
    stored.quarantined = len(chunk.rejects)
    return stored


def store_object(
    settings: Settings,
    engine: Engine,
    obj: LogObject,
    chunks: Iterable[PreparedChunk],
    identity: Callable[[], tuple[int, str]],
    run_id: int | None,
    on_chunk: Callable[[int], None] | None = None,
) -> ObjectResult:
    """Store every chunk of ``obj`` and its manifest row in one transaction.

    ``chunks`` may be a lazy stream (read, parsed and validated as it is consumed);
    ``identity`` is called after it is exhausted; ``on_chunk`` gets each chunk's line count
    as it is stored. If another run committed the same object first, nothing is written,
    ``chunks`` may be left unread and the result says so in ``skipped``.

    Raises:
        StoreError: another run stored the same feedback at the same time (rerun).
    """
    counts = StoreCounts()
    reasons: Counter[str] = Counter()
    now = utc_now()
    raw_limit = settings.ingest.raw_line_max_chars
    try:
        with engine.begin() as conn:
            object_id = begin_object(conn, obj.uri, obj.kind, run_id, now)
            for number, chunk in enumerate(chunks):
                counts.add(_store_chunk(conn, obj, object_id, number, chunk, raw_limit, now))
                reasons.update(r.reason for r in chunk.rejects)
                if on_chunk is not None:
                    on_chunk(chunk.lines)
            if not counts.balanced:  # a bug, never data: refuse to commit it
                raise AssertionError(f"{obj.uri}: accounting does not balance: {counts}")
            size, etag = identity()
            finish_object(conn, object_id, counts, size, etag, obj.mtime_ns)
    except IntegrityError:
        if not _in_manifest(engine, obj.uri):
            raise StoreError(
                f"{obj.uri}: another ingest stored the same feedback at the same time; nothing "
                "of this object was written, rerun `citeops ingest` (run one ingest at a time)"
            ) from None
        return ObjectResult(obj.uri, obj.kind, StoreCounts(), Counter(), TAKEN_BY_ANOTHER_RUN)
    return ObjectResult(obj.uri, obj.kind, counts, reasons)


def _in_manifest(engine: Engine, uri: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(select(ingest_objects.c.id).where(ingest_objects.c.uri == uri))
        return found.first() is not None


def start_run(engine: Engine, root: str) -> int:
    """Insert the run's ``ingest_runs`` row; returns its id."""
    with engine.begin() as conn:
        result = conn.execute(ingest_runs.insert().values(source=root, started_at=utc_now()))
        return int(result.inserted_primary_key[0])


def finish_run(engine: Engine, run_id: int, report: IngestReport) -> None:
    """Close the run's row with its report (the JSON, plus the changed objects' URIs)."""
    payload = report.to_dict() | {"changed": [c.uri for c in report.changed]}
    with engine.begin() as conn:
        conn.execute(
            update(ingest_runs)
            .where(ingest_runs.c.id == run_id)
            .values(finished_at=utc_now(), report=orjson.dumps(payload).decode())
        )
