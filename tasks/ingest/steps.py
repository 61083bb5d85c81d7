"""Thin Prefect tasks over the ingest stage functions, for the ``ingest-feedback`` flow.

Each task calls the function ``citeops ingest`` calls (:mod:`.pipeline`): one object is
read, validated and committed in one task, streamed in chunks (memory bounded by
``ingest.chunk_lines``). Store and S3 tasks retry (``ingest.task_retries``; the flow sets
it): a failed object rolls back whole and a retry reads it again from the start, so a
retry cannot count a line twice. No caching: every run must see the manifest as it is
now. The flow sends the stage's log records to the run's logs
(:func:`citeops.flows.logs.stage_logs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.ingest.commit import start_run
from citeops.tasks.ingest.pipeline import IngestReport, Progress, close_run, ingest_object
from citeops.tasks.ingest.plan import Plan, plan_objects
from citeops.tasks.ingest.read import InlineReader
from citeops.tasks.ingest.report import ObjectResult
from citeops.tasks.ingest.sources import resolve_root
from citeops.tasks.store.schema import open_store

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.sources import LogObject

RETRY_DELAYS = [2, 5, 15]


@dataclass
class IngestRun:
    """A started run: its ``ingest_runs`` id, its reader and its progress counter."""

    run_id: int
    reader: InlineReader
    progress: Progress


@task(name="plan-ingest", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def plan_ingest(settings: Settings, source: str | None) -> Plan:
    """The objects under the root not yet in the manifest, those that changed, and the
    entries skipped (see :func:`~citeops.tasks.ingest.plan.plan_objects`)."""
    with open_store(settings) as engine:
        root = resolve_root(settings, source)
        return plan_objects(settings, engine, root, missing_ok=source is None)


@task(name="start-ingest-run", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def start_ingest_run(settings: Settings, plan: Plan) -> IngestRun:
    """Open the run's ``ingest_runs`` row; build the validator and the leakage guard."""

    reader = InlineReader.build(settings)
    with open_store(settings) as engine:
        run_id = start_run(engine, plan.root)
    progress = Progress(len(plan.new), settings.ingest.progress_every_lines)
    return IngestRun(run_id, reader, progress)


@task(name="ingest-object", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def ingest_one(settings: Settings, obj: LogObject, run: IngestRun) -> ObjectResult:
    """Read, validate and commit one object in one transaction (skipped and reported when
    another run committed it first)."""
    with open_store(settings) as engine:
        return ingest_object(settings, engine, obj, run.reader, run.run_id, run.progress)


@task(name="summarise-ingest", retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def summarise(
    settings: Settings, plan: Plan, results: list[ObjectResult], run: IngestRun | None
) -> IngestReport:
    """Sum the objects' results, count new feedback since the last training, close the run."""
    report = IngestReport(source=plan.root, changed=plan.changed, skipped=list(plan.skipped))
    for result in results:
        report.add(result)
    with open_store(settings) as engine:
        run_id = run.run_id if run is not None else None
        return close_run(engine, report, run_id, settings.feedback.require_credentials)


@task(name="publish-ingest-report", cache_policy=NO_CACHE)
def publish_report(report: IngestReport) -> None:
    """The report as a Prefect markdown artifact (key ``ingest-feedback-report``)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key="ingest-feedback-report",
        markdown=report.to_markdown(),
        description=f"ingest: {report.counts.lines} lines, {report.objects} objects",
    )
