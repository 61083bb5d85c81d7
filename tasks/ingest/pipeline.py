"""The ingest pipeline: plan (what is new, what changed), then for each new object read,
parse, validate and store it in one transaction, and sum up a report.

Guarantees:

- **exact accounting**: every line of every ingested object is accepted, a duplicate, a
  conflict or quarantined (with its reason), so ``accepted + duplicates + conflicts +
  quarantined == lines`` in every report and in every manifest row;
- **idempotent**: the manifest holds each ingested object's URI, size and ETag (S3) or
  SHA-256 (local); a rerun reads only objects it does not hold. An object whose bytes
  changed after ingestion is reported (and recorded in its manifest row), never re-read;
- **crash-safe**: an object's manifest row and all its rows commit in one transaction, so
  a process killed at any point leaves whole objects or nothing, and a rerun completes
  the work exactly once.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from citeops.tasks.ingest.parse import ParsedChunk, Reject, parse_lines
from citeops.tasks.ingest.sources import (
    LineReader,
    LogObject,
    list_objects,
    open_object,
    resolve_root,
)
from citeops.tasks.store.schema import StoreError, ingest_objects, ingest_runs, open_store, utc_now
from citeops.tasks.store.writer import (
    StoreCounts,
    add_pair_keys,
    begin_object,
    finish_object,
    store_feedback,
    store_queries,
    store_rejects,
    store_validation,
)

if TYPE_CHECKING:
    from datetime import datetime

    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.validate import BatchValidator

REPORT_KEYS = (
    "objects",
    "lines",
    "accepted",
    "duplicates",
    "conflicts",
    "quarantined",
    "leaked",
    "reasons",
    "new_feedback_since_last_training",
)


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
    """What a run will do: the objects to ingest and those that changed since ingestion."""

    root: str
    new: list[LogObject] = field(default_factory=list)
    changed: list[ChangedObject] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class PreparedChunk:
    """Consecutive lines of one object after parsing and validation, ready to store."""

    lines: int
    rows: list[dict[str, Any]]
    rejects: list[Reject]
    validation: dict[str, Any] | None


@dataclass
class ObjectResult:
    uri: str
    kind: str
    counts: StoreCounts
    reasons: Counter[str]
    skipped: bool = False  # another process ingested it first


@dataclass
class IngestReport:
    """The run's report; :meth:`to_dict` is the JSON printed and returned."""

    objects: int = 0
    counts: StoreCounts = field(default_factory=StoreCounts)
    reasons: Counter[str] = field(default_factory=Counter)
    new_feedback_since_last_training: int = 0
    changed: list[ChangedObject] = field(default_factory=list)
    source: str = ""
    seconds: float = 0.0

    def add(self, result: ObjectResult) -> None:
        if result.skipped:
            return
        self.objects += 1
        self.counts.add(result.counts)
        self.reasons.update(result.reasons)

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "objects": self.objects,
            "lines": c.lines,
            "accepted": c.accepted,
            "duplicates": c.duplicates,
            "conflicts": c.conflicts,
            "quarantined": c.quarantined,
            "leaked": c.leaked,
            "reasons": dict(sorted(self.reasons.items())),
            "new_feedback_since_last_training": self.new_feedback_since_last_training,
        }

    def to_markdown(self) -> str:
        """The report as a Markdown table (the Prefect artifact)."""
        d = self.to_dict()
        lines = [
            f"# Feedback ingest: `{self.source}`",
            "",
            "| measure | value |",
            "| --- | ---: |",
        ]
        lines += [f"| {k} | {d[k]:,} |" for k in REPORT_KEYS if k != "reasons"]
        if d["reasons"]:
            lines += ["", "| quarantine reason | lines |", "| --- | ---: |"]
            lines += [f"| {k} | {v:,} |" for k, v in d["reasons"].items()]
        if self.changed:
            lines += ["", "Objects changed after ingestion (not re-read):", ""]
            lines += [f"- `{c.uri}`" for c in self.changed]
        if self.seconds:
            lines += ["", f"{self.seconds:.1f} s"]
        return "\n".join(lines)


Progress = Callable[[int, int, int], None]  # (objects done, objects planned, lines so far)


# ---- planning ---------------------------------------------------------------------------
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
    plan = Plan(root=root)
    listed = list_objects(settings, root, missing_ok)
    with engine.connect() as conn:
        manifest = {
            row.uri: row
            for row in conn.execute(
                select(
                    ingest_objects.c.uri,
                    ingest_objects.c.size,
                    ingest_objects.c.etag,
                    ingest_objects.c.mtime_ns,
                    ingest_objects.c.changed_etag,
                ).where(ingest_objects.c.uri.startswith(root, autoescape=True))
            )
        }
    touch: list[dict[str, Any]] = []
    for obj in listed:
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
    if touch or plan.changed:
        now = utc_now()
        with engine.begin() as conn:
            for item in touch:
                conn.execute(
                    update(ingest_objects)
                    .where(ingest_objects.c.uri == item["uri"])
                    .values(mtime_ns=item["mtime_ns"])
                )
            for change in plan.changed:
                conn.execute(
                    update(ingest_objects)
                    .where(ingest_objects.c.uri == change.uri)
                    .values(changed_etag=change.etag, changed_size=change.size, changed_seen_at=now)
                )
    return plan


# ---- reading, parsing, validating -------------------------------------------------------
class ObjectReader:
    """Streams one object as parsed chunks of ``ingest.chunk_lines`` lines; after the
    chunks are consumed, :meth:`identity` gives the bytes' size and ETag / SHA-256."""

    def __init__(self, settings: Settings, obj: LogObject) -> None:
        self.settings = settings
        self.obj = obj
        self._reader: LineReader | None = None

    def chunks(self) -> Iterator[ParsedChunk]:
        size = self.settings.ingest.chunk_lines
        with open_object(self.settings, self.obj) as stream:
            self._reader = LineReader(stream, self.settings.ingest.max_line_bytes)
            lines = iter(self._reader)
            while batch := list(islice(lines, size)):
                yield parse_lines(self.obj.kind, batch)

    def identity(self) -> tuple[int, str]:
        """``(size, etag)`` of the bytes read (S3: the listed ETag)."""
        assert self._reader is not None, "identity() before chunks() were read"
        etag = self.obj.etag or self._reader.sha256.hexdigest()
        return self._reader.bytes_read, etag


def prepare_chunk(
    validator: BatchValidator,
    kind: str,
    parsed: ParsedChunk,
    now: datetime,
    leaked_claims: frozenset[str],
) -> PreparedChunk:
    """Validate a parsed chunk with the kind's GX suite; key feedback rows by their pair."""
    checked = validator.validate(kind, parsed.rows, now)
    if kind == "feedback":
        add_pair_keys(checked.rows, leaked_claims)
    return PreparedChunk(
        lines=parsed.lines,
        rows=checked.rows,
        rejects=parsed.rejects + checked.rejects,
        validation=checked.result,
    )


# ---- storing ----------------------------------------------------------------------------
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
    ``identity`` is called after it is exhausted. If another process committed the same
    object first, nothing is written and the result is marked ``skipped``.
    """
    counts = StoreCounts()
    reasons: Counter[str] = Counter()
    now = utc_now()
    raw_limit = settings.ingest.raw_line_max_chars
    try:
        with engine.begin() as conn:
            object_id = begin_object(conn, obj.uri, obj.kind, run_id, now)
            for number, chunk in enumerate(chunks):
                store_rejects(conn, object_id, obj.uri, chunk.rejects, raw_limit, now)
                if chunk.validation is not None:
                    store_validation(conn, object_id, number, chunk.validation, now)
                if obj.kind == "queries":
                    stored = store_queries(conn, object_id, chunk.rows, now)
                else:
                    stored = store_feedback(conn, object_id, chunk.rows, now)
                stored.lines = chunk.lines
                stored.quarantined = len(chunk.rejects)
                counts.add(stored)
                reasons.update(r.reason for r in chunk.rejects)
                if on_chunk is not None:
                    on_chunk(chunk.lines)
            if not counts.balanced:  # a bug, never data: refuse to commit it
                raise AssertionError(f"{obj.uri}: accounting does not balance: {counts}")
            size, etag = identity()
            finish_object(conn, object_id, counts, size, etag, obj.mtime_ns)
    except IntegrityError:
        with engine.connect() as conn:
            taken = conn.execute(
                select(ingest_objects.c.id).where(ingest_objects.c.uri == obj.uri)
            ).first()
        if taken is None:
            raise StoreError(
                f"{obj.uri}: another ingest stored the same feedback at the same time; nothing "
                "of this object was written, rerun `citeops ingest` (run one ingest at a time)"
            ) from None
        return ObjectResult(obj.uri, obj.kind, StoreCounts(), Counter(), skipped=True)
    return ObjectResult(obj.uri, obj.kind, counts, reasons)


def start_run(engine: Engine, root: str) -> int:
    with engine.begin() as conn:
        result = conn.execute(ingest_runs.insert().values(source=root, started_at=utc_now()))
        return int(result.inserted_primary_key[0])


def finish_run(engine: Engine, run_id: int, report: IngestReport) -> None:
    payload = report.to_dict() | {"changed": [c.uri for c in report.changed]}
    with engine.begin() as conn:
        conn.execute(
            update(ingest_runs)
            .where(ingest_runs.c.id == run_id)
            .values(finished_at=utc_now(), report=orjson.dumps(payload).decode())
        )


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Fewer cyclic-GC passes while chunks of tens of thousands of rows are alive: with
    the default thresholds the collector rescans them over and over (about a quarter of
    the CPU time of a large ingest). Memory stays bounded: rows hold no cycles."""
    old = gc.get_threshold()
    gc.set_threshold(50_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*old)


# ---- the whole run ----------------------------------------------------------------------
def ingest(
    settings: Settings,
    source: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest every new object under ``source`` (default ``settings.log_root``, which may
    not exist yet), streaming each in chunks (memory bounded by ``ingest.chunk_lines``).

    Raises:
        SourceError: the root cannot be listed or an object cannot be read.
        DataFileError: the benchmark test sets for the leakage guard are missing.
        StoreError: the curated store cannot be opened.
    """
    from citeops.tasks.ingest.leakage import benchmark_test_claims
    from citeops.tasks.store.queries import new_feedback_since_last_training

    started = time.monotonic()
    root = resolve_root(settings, source)
    report = IngestReport(source=root)
    with open_store(settings) as engine, bulk_gc():
        plan = plan_objects(settings, engine, root, missing_ok=source is None)
        report.changed = plan.changed
        if plan.new:
            run_id = start_run(engine, root)
            lines_done = 0

            def on_chunk(lines: int) -> None:
                nonlocal lines_done
                lines_done += lines
                if progress is not None:
                    progress(report.objects, len(plan.new), lines_done)

            planned_bytes = sum(obj.size for obj in plan.new)
            if planned_bytes >= settings.ingest.parallel_parse_min_bytes:
                from citeops.tasks.ingest.prefetch import Prefetcher

                with Prefetcher(settings, plan.new) as prefetcher:
                    prefetcher.feed(benchmark_test_claims(settings))
                    for obj in plan.new:
                        result = store_object(
                            settings,
                            engine,
                            obj,
                            prefetcher.chunks(obj),
                            lambda obj=obj: prefetcher.identity(obj),
                            run_id,
                            on_chunk,
                        )
                        report.add(result)
            else:
                from citeops.tasks.ingest.validate import BatchValidator

                leaked_claims = benchmark_test_claims(settings)
                validator = BatchValidator(settings)
                for obj in plan.new:
                    reader = ObjectReader(settings, obj)
                    now = utc_now()
                    chunks = (
                        prepare_chunk(validator, obj.kind, c, now, leaked_claims)
                        for c in reader.chunks()
                    )
                    result = store_object(
                        settings,
                        engine,
                        obj,
                        chunks,
                        reader.identity,
                        run_id,
                        on_chunk,
                    )
                    report.add(result)
            report.new_feedback_since_last_training = new_feedback_since_last_training(engine)
            report.seconds = time.monotonic() - started
            finish_run(engine, run_id, report)
        else:
            report.new_feedback_since_last_training = new_feedback_since_last_training(engine)
    report.seconds = time.monotonic() - started
    return report
