"""Thin Prefect tasks over the ingest functions, for the ``ingest-feedback`` flow.

Each object is read (and parsed) whole, validated, then stored in one transaction; the
CLI's :func:`tasks.ingest.pipeline.ingest` streams instead. The log writer's parts are
small (``serve.log_part_max_lines``), so holding one object in memory here is cheap.
S3 and database tasks retry (``ingest.task_retries``; the flow sets it): a failed store
rolls back whole, so a retry cannot count a line twice. No caching: every run must see
the manifest as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.ingest.pipeline import (
    IngestReport,
    ObjectReader,
    ObjectResult,
    Plan,
    PreparedChunk,
    finish_run,
    plan_objects,
    prepare_chunk,
    start_run,
    store_object,
)
from citeops.tasks.ingest.sources import LogObject, resolve_root
from citeops.tasks.store.schema import open_store, utc_now

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.parse import ParsedChunk
    from citeops.tasks.ingest.validate import BatchValidator

RETRY_DELAYS = [2, 5, 15]


@dataclass
class ReadObject:
    """An object's parsed chunks and the identity of the bytes they came from."""

    obj: LogObject
    chunks: list[ParsedChunk]
    size: int
    etag: str


@task(name="list-new-objects", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def list_new_objects(settings: Settings, source: str | None) -> Plan:
    """The objects under the root not yet in the manifest (and those that changed)."""
    with open_store(settings) as engine:
        root = resolve_root(settings, source)
        return plan_objects(settings, engine, root, missing_ok=source is None)


@task(name="benchmark-test-claims", cache_policy=NO_CACHE)
def benchmark_test_claims_task(settings: Settings) -> frozenset[str]:
    from citeops.tasks.ingest.leakage import benchmark_test_claims

    return benchmark_test_claims(settings)


@task(name="start-ingest-run", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def start_ingest_run(settings: Settings, root: str) -> int:
    with open_store(settings) as engine:
        return start_run(engine, root)


@task(name="read-and-parse", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def read_and_parse(settings: Settings, obj: LogObject) -> ReadObject:
    """Read one object (local or S3) and parse its lines."""
    reader = ObjectReader(settings, obj)
    chunks = list(reader.chunks())
    size, etag = reader.identity()
    return ReadObject(obj, chunks, size, etag)


@task(name="build-validator", cache_policy=NO_CACHE)
def build_validator(settings: Settings) -> BatchValidator:
    """The Great Expectations context with the feedback and queries suites (once a run)."""
    from citeops.tasks.ingest.validate import BatchValidator

    return BatchValidator(settings)


@task(name="validate", cache_policy=NO_CACHE)
def validate(
    validator: BatchValidator, read: ReadObject, leaked_claims: frozenset[str]
) -> list[PreparedChunk]:
    """Run the object's Great Expectations suite over its parsed lines; mark leaks."""
    now = utc_now()
    return [
        prepare_chunk(validator, read.obj.kind, chunk, now, leaked_claims) for chunk in read.chunks
    ]


@task(name="store", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def store(
    settings: Settings,
    read: ReadObject,
    prepared: list[PreparedChunk],
    run_id: int,
) -> ObjectResult:
    """Store one object's rows, quarantine, validation results and manifest row at once."""
    with open_store(settings) as engine:
        return store_object(
            settings,
            engine,
            read.obj,
            prepared,
            lambda: (read.size, read.etag),
            run_id,
        )


@task(name="summarise-ingest", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def summarise(
    settings: Settings, plan: Plan, results: list[ObjectResult], run_id: int | None
) -> IngestReport:
    """Sum the objects' results, count new feedback since the last training, close the run."""
    from citeops.tasks.store.queries import new_feedback_since_last_training

    report = IngestReport(source=plan.root, changed=plan.changed)
    for result in results:
        report.add(result)
    with open_store(settings) as engine:
        report.new_feedback_since_last_training = new_feedback_since_last_training(engine)
        if run_id is not None:
            finish_run(engine, run_id, report)
    return report


@task(name="publish-ingest-report", cache_policy=NO_CACHE)
def publish_report(report: IngestReport) -> None:
    """The report as a Prefect markdown artifact (key ``ingest-feedback-report``)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key="ingest-feedback-report",
        markdown=report.to_markdown(),
        description=f"ingest: {report.counts.lines} lines, {report.objects} objects",
    )
