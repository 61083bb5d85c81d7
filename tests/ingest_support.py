"""Helpers shared by the ingest tests: writing log parts and snapshotting the store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

GOOD = {
    "claim": "Aspirin lowers the risk of heart attack in adults.",
    "evidence": "In a trial of 20,000 adults, aspirin reduced myocardial infarction by 40%.",
    "model": "claim-verifier",
    "prediction": {"SUPPORT": 0.7, "NEI": 0.2, "REFUTE": 0.1},
    "user_label": "SUPPORT",
    "datetime": "2026-01-05T10:00:00Z",
}


def feedback_line(**changes: Any) -> dict[str, Any]:
    """A valid AI4citations feedback record with ``changes`` applied (None drops a key)."""
    record = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def query_line(i: int, **changes: Any) -> dict[str, Any]:
    record = {
        "request_id": f"req-{i:06d}",
        "datetime": f"2026-01-05T10:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
        "claim": f"Claim number {i} about statins.",
        "evidence": "Statins lowered LDL cholesterol in the treated group.",
        "model_version": "3",
        "slot": "blue",
        "prediction": "SUPPORT",
        "probabilities": {"SUPPORT": 0.8, "NEI": 0.15, "REFUTE": 0.05},
        "latency_ms": 12.5,
    }
    record.update(changes)
    return record


def write_part(root: Path, stream: str, day: str, name: str, lines: list[Any]) -> Path:
    """Write ``lines`` (dicts become JSON, bytes and str are written as they are) as one
    published part ``<root>/<stream>/date=<day>/<name>``, one per line."""
    folder = root / stream / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    chunks = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        chunks.append(line if isinstance(line, bytes) else line.encode("utf-8"))
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return path


def store_snapshot(settings: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the store holds that a run determines (no ids, no wall-clock times)."""
    from citeops.tasks.store import schema as s

    with s.open_store(settings) as engine, engine.connect() as conn:
        uri = {row.id: row.uri for row in conn.execute(select(s.ingest_objects))}

        def rows(stmt: Any, fn: Any) -> list[tuple[Any, ...]]:
            return sorted(fn(r) for r in conn.execute(stmt))

        return {
            "objects": rows(
                select(s.ingest_objects),
                lambda r: (
                    r.uri,
                    r.kind,
                    r.size,
                    r.etag,
                    r.lines,
                    r.accepted,
                    r.duplicates,
                    r.conflicts,
                    r.quarantined,
                    r.leaked,
                ),
            ),
            "feedback": rows(
                select(s.feedback),
                lambda r: (
                    uri[r.object_id],
                    r.line_no,
                    r.claim,
                    r.evidence,
                    r.user_label,
                    r.votes,
                    r.leaked,
                    r.conflict,
                    r.datetime,
                    r.last_datetime,
                    r.pair_key,
                ),
            ),
            "queries": rows(
                select(s.queries),
                lambda r: (uri[r.object_id], r.line_no, r.request_id, r.claim, r.datetime),
            ),
            "quarantine": rows(
                select(s.quarantine),
                lambda r: (r.uri, r.line_no, r.reason, r.raw),
            ),
            "validation": rows(
                select(s.validation_results),
                lambda r: (uri[r.object_id], r.chunk, r.suite, r.rows, r.unexpected_rows),
            ),
            "clients": rows(
                select(s.feedback_clients),
                lambda r: (r.pair_key, r.user_label, r.client_id, r.votes, r.last_datetime),
            ),
        }


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """A database of its own on the PostgreSQL server of ``admin_url`` (a libpq URL),
    dropped afterwards; yields its SQLAlchemy URL (psycopg 3)."""
    import psycopg

    name = f"citeops_test_{uuid.uuid4().hex[:12]}"
    scheme, rest = admin_url.split("://", 1)
    server = rest.split("/", 1)[0]
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://{server}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
