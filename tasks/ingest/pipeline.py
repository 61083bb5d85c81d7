"""The ingest run: plan what is new (:mod:`.plan`), then for each new object read, parse
and validate it (:mod:`.read`) while committing it in one transaction (:mod:`.commit`),
and sum up a report (:mod:`.report`).

:func:`ingest` is the whole run (``citeops ingest``); :func:`ingest_object` is one object,
the step the ``ingest-feedback`` flow runs per object. Both stream: memory is bounded by
``ingest.chunk_lines``, whatever the size of an object.

Guarantees: every line accounted for (``accepted + duplicates + conflicts + quarantined ==
lines`` in every report and manifest row); idempotent (a rerun reads only objects not in
the manifest; an object whose bytes changed after ingestion is reported, never re-read);
crash-safe (whole objects or nothing); concurrent runs never count an object twice (the
later one skips and reports it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from citeops.tasks.ingest.commit import finish_run, start_run, store_object
from citeops.tasks.ingest.leakage import benchmark_test_claims
from citeops.tasks.ingest.plan import plan_objects
from citeops.tasks.ingest.prefetch import Prefetcher
from citeops.tasks.ingest.read import ChunkSource, InlineReader, bulk_gc
from citeops.tasks.ingest.report import REPORT_KEYS, IngestReport, ObjectResult
from citeops.tasks.ingest.sources import resolve_root
from citeops.tasks.store.queries import new_feedback_since_last_training
from citeops.tasks.store.schema import open_store

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.sources import LogObject

__all__ = ["REPORT_KEYS", "IngestReport", "Progress", "close_run", "ingest", "ingest_object"]

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Logs ``ingest: N lines read, d/p objects stored`` each time another ``every`` lines
    were stored (``ingest.progress_every_lines``)."""

    planned: int
    every: int
    lines: int = 0
    done: int = 0

    def chunk(self, lines: int) -> None:
        """Count a stored chunk; log when a multiple of ``every`` lines was passed."""
        before, self.lines = self.lines, self.lines + lines
        if self.lines // self.every > before // self.every:
            self.log()

    def object_done(self) -> None:
        self.done += 1

    def log(self) -> None:
        lines, done, planned = f"{self.lines:,}", self.done, self.planned
        log.info("ingest: %s lines read, %d/%d objects stored", lines, done, planned)


def ingest_object(
    settings: Settings,
    engine: Engine,
    obj: LogObject,
    source: ChunkSource,
    run_id: int | None,
    progress: Progress | None = None,
) -> ObjectResult:
    """Read, validate and commit one object from ``source`` in one transaction.

    If another run committed ``obj`` first, nothing is written and the result's ``skipped``
    says so.

    Raises:
        SourceError: the object cannot be read.
        StoreError: another run stored the same feedback at the same time (rerun).
    """
    result = store_object(
        settings,
        engine,
        obj,
        source.chunks(obj),
        lambda: source.identity(obj),
        run_id,
        progress.chunk if progress is not None else None,
    )
    if result.skipped is not None:
        log.warning("ingest: skipped %s (%s)", obj.uri, result.skipped)
    else:
        c = result.counts
        log.debug(
            "ingest: stored %s: %d lines, %d accepted, %d duplicates, %d conflicts, %d quarantined",
            obj.uri,
            c.lines,
            c.accepted,
            c.duplicates,
            c.conflicts,
            c.quarantined,
        )
    if progress is not None:
        progress.object_done()
    return result


@contextmanager
def open_reader(settings: Settings, objects: Sequence[LogObject]) -> Iterator[ChunkSource]:
    """The chunk source for ``objects``: a reader child process (reading overlaps storing,
    two cores) when they hold at least ``ingest.parallel_parse_min_bytes``, else in-process
    (the child costs a GX import).

    Raises:
        DataFileError: the benchmark test sets for the leakage guard are missing.
    """
    if sum(obj.size for obj in objects) < settings.ingest.parallel_parse_min_bytes:
        yield InlineReader.build(settings)
        return

    with Prefetcher(settings, objects) as prefetcher:
        prefetcher.feed(benchmark_test_claims(settings))
        yield prefetcher


def close_run(
    engine: Engine, report: IngestReport, run_id: int | None, authenticated_only: bool = False
) -> IngestReport:
    """Count the usable feedback new since the last training into ``report`` (as the
    trigger counts it: ``authenticated_only`` where credentials are required) and, when
    the run stored anything, close its ``ingest_runs`` row."""

    report.new_feedback_since_last_training = new_feedback_since_last_training(
        engine, authenticated_only
    )
    if run_id is not None:
        finish_run(engine, run_id, report)
    return report


def ingest(settings: Settings, source: str | None = None) -> IngestReport:
    """Ingest every new object under ``source`` (default ``settings.log_root``, which may
    not exist yet), streaming each in chunks (memory bounded by ``ingest.chunk_lines``).

    Raises:
        SourceError: the root cannot be listed or an object cannot be read.
        DataFileError: the benchmark test sets for the leakage guard are missing.
        StoreError: the curated store cannot be opened.
    """
    started = time.monotonic()
    root = resolve_root(settings, source)
    report = IngestReport(source=root)
    run_id = None
    with open_store(settings) as engine, bulk_gc():
        plan = plan_objects(settings, engine, root, missing_ok=source is None)
        report.changed, report.skipped = plan.changed, list(plan.skipped)
        if plan.new:
            run_id = start_run(engine, root)
            progress = Progress(len(plan.new), settings.ingest.progress_every_lines)
            with open_reader(settings, plan.new) as reader:
                for obj in plan.new:
                    report.add(ingest_object(settings, engine, obj, reader, run_id, progress))
        report.seconds = time.monotonic() - started
        close_run(engine, report, run_id, settings.feedback.require_credentials)
    report.seconds = time.monotonic() - started
    return report
