"""Promotion records and the named lock that keeps one retrain / promotion at a time.

A :class:`PromotionRecord` is one row of the ``promotions`` table: which version was tried
against which champion, why the run started, the gate's decision, the bake figures and how
it ended. :func:`hold_lock` is a lock row with an owner and an expiry: a crashed holder's
lock expires after ``retrain.lock_ttl_seconds``, at once when the holder was a process on
this host that no longer runs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from citeops.tasks.errors import CiteopsError
from citeops.tasks.store.schema import (
    locks,
    open_store,
    promotions,
    retry_unreachable,
    utc_naive,
    utc_now,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from citeops.configs.settings import Settings

log = logging.getLogger(__name__)

RETRAIN_LOCK = "retrain"
OUTCOMES = (
    "running",
    "promoted",
    "gate_failed",
    "rolled_back",
    "failed",
    "skipped",
    "rollback",
    "online",  # the challenger started its online phase (tasks/release/online.py)
    "aborted",  # its online phase ended without promotion
    "abandoned",  # its process died while it ran (found and closed by reconcile_records)
)
RUNNING_IN = "running in "  # the detail of a running record: "running in <host>:<pid>"
JSON_FIELDS = ("trigger", "gate", "bake", "data", "mlflow_run_ids")


class LockHeld(CiteopsError):
    """Another retrain or promotion holds the lock."""


@dataclass
class PromotionRecord:
    """What one retrain / promote / rollback run did; ``id`` is set once stored."""

    kind: str  # retrain | promote | rollback
    outcome: str = "running"
    version: str | None = None
    previous_version: str | None = None
    trigger: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    bake: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    cost_usd: float | None = None
    flow_run_id: str | None = None
    mlflow_run_ids: dict[str, str] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``promoted_at`` is the finish time of a promotion that succeeded."""
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        out["promoted_at"] = out["finished_at"] if self.outcome == "promoted" else None
        return out


def _row_values(record: PromotionRecord) -> dict[str, Any]:
    values = {
        key: value
        for key, value in asdict(record).items()
        if key not in ("id", "started_at", "finished_at")
    }
    for name in JSON_FIELDS:
        values[name] = json.dumps(values[name], default=str)
    values["started_at"] = utc_naive(record.started_at)
    values["finished_at"] = utc_naive(record.finished_at) if record.finished_at else None
    return values


def save_record(settings: Settings, record: PromotionRecord) -> PromotionRecord:
    """Insert the record (first call) or update it (later calls); returns it with its id.
    A store restarting meanwhile costs a few seconds (:func:`retry_unreachable`).

    Raises:
        StoreUnreachable: the store stayed unreachable.
    """
    if record.id is None and record.outcome == "running" and not record.detail:
        record.detail = f"{RUNNING_IN}{socket.gethostname()}:{os.getpid()}"
    return retry_unreachable(lambda: _write_record(settings, record), f"{record.kind} record")


def _write_record(settings: Settings, record: PromotionRecord) -> PromotionRecord:
    """One transaction of :func:`save_record`; ``record.id`` is set once the row is in."""
    values = _row_values(record)
    with open_store(settings) as engine, engine.begin() as conn:
        if record.id is None:
            inserted = conn.execute(insert(promotions).values(**values)).inserted_primary_key[0]
        else:
            inserted = None
            conn.execute(update(promotions).where(promotions.c.id == record.id).values(**values))
    if inserted is not None:
        record.id = int(inserted)
    return record


def finish_record(
    settings: Settings, record: PromotionRecord, outcome: str, detail: str = ""
) -> PromotionRecord:
    """Set the outcome and the finish time, and store the record."""
    record.outcome = outcome
    record.detail = detail or record.detail
    record.finished_at = datetime.now(UTC)
    return save_record(settings, record)


def _from_row(row: Any) -> PromotionRecord:
    data = dict(row._mapping)
    for name in JSON_FIELDS:
        data[name] = json.loads(data[name]) if data[name] else {}
    data["started_at"] = data["started_at"].replace(tzinfo=UTC)
    if data["finished_at"] is not None:
        data["finished_at"] = data["finished_at"].replace(tzinfo=UTC)
    return PromotionRecord(**data)


def list_records(settings: Settings, limit: int | None = None) -> list[PromotionRecord]:
    """Records, newest first."""
    query = select(promotions).order_by(promotions.c.id.desc())
    if limit:
        query = query.limit(limit)
    with open_store(settings) as engine, engine.connect() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def last_promotion(settings: Settings) -> PromotionRecord | None:
    """The newest record whose outcome is ``promoted`` (what ``rollback`` undoes)."""
    query = (
        select(promotions)
        .where(promotions.c.outcome == "promoted")
        .order_by(promotions.c.id.desc())
        .limit(1)
    )
    with open_store(settings) as engine, engine.connect() as conn:
        row = conn.execute(query).first()
    return _from_row(row) if row is not None else None


def running_holder(record: PromotionRecord) -> str | None:
    """``<host>:<pid>`` of the process that runs a ``running`` record (``None`` if unknown)."""
    if record.outcome != "running" or not record.detail.startswith(RUNNING_IN):
        return None
    return record.detail[len(RUNNING_IN) :]


def is_orphaned(record: PromotionRecord, lock_alive: bool, ttl_seconds: float) -> bool:
    """True when a ``running`` record's process is gone: it ran on this host and its pid no
    longer runs, or (elsewhere, or unknown) nobody holds the lock and it started longer
    than the lock's time to live ago."""
    if record.outcome != "running":
        return False
    holder = running_holder(record)
    if holder is not None and _holder_is_dead(holder):
        return True
    on_this_host = holder is not None and holder.partition(":")[0] == socket.gethostname()
    age = (datetime.now(UTC) - record.started_at).total_seconds()
    return not on_this_host and not lock_alive and age > ttl_seconds


def lock_is_alive(settings: Settings, name: str = RETRAIN_LOCK) -> bool:
    """True when a live, unexpired holder has the named lock."""
    with open_store(settings) as engine, engine.connect() as conn:
        held = conn.execute(select(locks).where(locks.c.name == name)).first()
    return held is not None and held.expires_at > utc_now() and not _holder_is_dead(held.owner)


def abandon_orphaned_records(settings: Settings) -> list[PromotionRecord]:
    """Close every ``running`` record whose process is gone (:func:`is_orphaned`) as
    ``abandoned``, saying whose it was; returns them. A killed run leaves its record
    ``running`` for good otherwise."""
    lock_alive = lock_is_alive(settings)
    ttl = settings.retrain.lock_ttl_seconds
    query = select(promotions).where(promotions.c.outcome == "running")
    with open_store(settings) as engine, engine.connect() as conn:
        running = [_from_row(row) for row in conn.execute(query)]
    closed = []
    for record in running:
        if is_orphaned(record, lock_alive, ttl):
            holder = running_holder(record) or "an unknown process"
            finish_record(settings, record, "abandoned", f"its process ({holder}) is gone")
            log.warning(
                "%s #%s abandoned: its process (%s) is gone", record.kind, record.id, holder
            )
            closed.append(record)
    return closed


# ---- the lock -----------------------------------------------------------------------------
def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _try_acquire(conn: Connection, name: str, owner: str, ttl: float) -> str | None:
    """Take the lock; ``None`` when taken, else the current holder's description."""
    now = utc_now()
    held = conn.execute(select(locks).where(locks.c.name == name)).first()
    if held is not None and held.owner == owner:  # a retry after a commit whose answer was lost
        return None
    if held is not None:
        if held.expires_at > now and not _holder_is_dead(held.owner):
            return f"{held.owner} since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
        log.warning(
            "taking over the %s lock of %s (expired or its process is gone)", name, held.owner
        )
        conn.execute(delete(locks).where(locks.c.name == name, locks.c.owner == held.owner))
    conn.execute(
        insert(locks).values(
            name=name, owner=owner, acquired_at=now, expires_at=now + timedelta(seconds=ttl)
        )
    )
    return None


@contextmanager
def hold_lock(
    settings: Settings, name: str = RETRAIN_LOCK, wait_seconds: float | None = None
) -> Iterator[str]:
    """Hold the named lock for the block; waits up to ``wait_seconds``
    (default ``retrain.lock_wait_seconds``) for another holder, then raises.

    Raises:
        LockHeld: another run holds it (the message names the holder).
    """
    owner = _owner()
    wait = settings.retrain.lock_wait_seconds if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    while True:
        try:
            holder = retry_unreachable(lambda: _acquire(settings, name, owner), f"the {name} lock")
        except IntegrityError:  # another process inserted between our read and insert
            holder = "another run"
        if holder is None:
            break
        if time.monotonic() >= deadline:
            raise LockHeld(
                f"another {name} run holds the lock ({holder}); wait for it to finish "
                f"(or set CITEOPS_RETRAIN__LOCK_WAIT_SECONDS to wait)"
            )
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    try:
        yield owner
    finally:
        retry_unreachable(lambda: _release(settings, name, owner), f"the {name} lock's release")


def _acquire(settings: Settings, name: str, owner: str) -> str | None:
    with open_store(settings) as engine, engine.begin() as conn:
        return _try_acquire(conn, name, owner, settings.retrain.lock_ttl_seconds)


def _release(settings: Settings, name: str, owner: str) -> None:
    with open_store(settings) as engine, engine.begin() as conn:
        conn.execute(delete(locks).where(locks.c.name == name, locks.c.owner == owner))
