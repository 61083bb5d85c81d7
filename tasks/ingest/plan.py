"""Planning a run: list the log root and compare it with the manifest of ingested objects.

An object not in the manifest is new; one in it is unchanged when its bytes are the ones
ingested (S3: size and ETag; local: size and mtime, else the SHA-256 of its bytes) and
changed otherwise. A changed object is reported and recorded in its manifest row, never
re-read. Entries that cannot be read as files are skipped and reported.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from citeops.tasks.ingest.sources import LogObject, SkippedEntry, list_objects
from citeops.tasks.store.schema import ingest_objects, utc_now

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangedObject:
    """An object already ingested whose bytes are not the ones ingested."""

    uri: str
    ingested_size: int
    ingested_etag: str
    size: int
    etag: str


@dataclass
class Plan:
    """What a run will do: the objects to ingest, those that changed since ingestion and
    the entries skipped because they cannot be read."""

    root: str
    new: list[LogObject] = field(default_factory=list)
    changed: list[ChangedObject] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[SkippedEntry] = field(default_factory=list)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_objects(settings: Settings, engine: Engine, root: str, missing_ok: bool = False) -> Plan:
    """List the root and compare with the manifest; record newly seen changes.

    Raises:
        SourceError: the root cannot be listed (or is missing, unless ``missing_ok``).
    """
    listing = list_objects(settings, root, missing_ok)
    plan = Plan(root=root, skipped=listing.skipped)
    with engine.connect() as conn:
        manifest = {
            row.uri: row
            for row in conn.execute(
                select(
                    ingest_objects.c.uri,
                    ingest_objects.c.size,
                    ingest_objects.c.etag,
                    ingest_objects.c.mtime_ns,
                ).where(ingest_objects.c.uri.startswith(root, autoescape=True))
            )
        }
    touch: list[dict[str, Any]] = []
    for obj in listing.objects:
        known = manifest.get(obj.uri)
        if known is None:
            plan.new.append(obj)
            continue
        if obj.etag is not None:  # S3
            same, etag = (obj.etag == known.etag and obj.size == known.size), obj.etag
        elif obj.size == known.size and obj.mtime_ns == known.mtime_ns:
            same, etag = True, known.etag
        else:
            etag = _file_sha256(obj.uri)
            same = etag == known.etag
            if same:
                touch.append({"uri": obj.uri, "mtime_ns": obj.mtime_ns})
        if same:
            plan.unchanged += 1
        else:
            plan.changed.append(ChangedObject(obj.uri, known.size, known.etag, obj.size, etag))
    _record(engine, touch, plan.changed)
    for entry in plan.skipped:
        log.warning("ingest: skipped %s (%s)", entry.uri, entry.reason)
    log.debug(
        "ingest: %s: %d new objects, %d unchanged, %d changed, %d skipped",
        root,
        len(plan.new),
        plan.unchanged,
        len(plan.changed),
        len(plan.skipped),
    )
    return plan


def _record(engine: Engine, touch: list[dict[str, Any]], changed: list[ChangedObject]) -> None:
    """Store the new mtime of objects touched with the same bytes, and the identity of
    objects seen changed, in their manifest rows."""
    if not (touch or changed):
        return
    now = utc_now()
    with engine.begin() as conn:
        for item in touch:
            conn.execute(
                update(ingest_objects)
                .where(ingest_objects.c.uri == item["uri"])
                .values(mtime_ns=item["mtime_ns"])
            )
        for change in changed:
            conn.execute(
                update(ingest_objects)
                .where(ingest_objects.c.uri == change.uri)
                .values(changed_etag=change.etag, changed_size=change.size, changed_seen_at=now)
            )
