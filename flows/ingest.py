"""The ``ingest-feedback`` flow: plan, then read, validate and commit each new log object,
sum up; publish the report as a markdown artifact and return it (the same JSON as
``citeops ingest --json``)."""

from __future__ import annotations

from typing import Any

from prefect import flow


@flow(name="ingest-feedback")
def ingest_feedback(source: str | None = None) -> dict[str, Any]:
    """Ingest new feedback and query logs under ``source`` (default: the log root)."""
    from citeops.configs.settings import load_settings
    from citeops.flows.logs import stage_logs
    from citeops.tasks.ingest import steps

    with stage_logs():
        settings = load_settings()
        retries = settings.ingest.task_retries
        plan = steps.plan_ingest.with_options(retries=retries)(settings, source)
        run, results = None, []
        if plan.new:
            run = steps.start_ingest_run.with_options(retries=retries)(settings, plan)
            ingest_one = steps.ingest_one.with_options(retries=retries)
            results = [ingest_one(settings, obj, run) for obj in plan.new]
        report = steps.summarise.with_options(retries=retries)(settings, plan, results, run)
        steps.publish_report(report)
    return report.to_dict()
