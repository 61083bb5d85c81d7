"""The ``ingest-feedback`` flow: list new log objects, then read, validate and store each;
publish the report as a markdown artifact and return it (the same JSON as
``citeops ingest --json``)."""

from __future__ import annotations

from typing import Any

from prefect import flow


@flow(name="ingest-feedback")
def ingest_feedback(source: str | None = None) -> dict[str, Any]:
    """Ingest new feedback and query logs under ``source`` (default: the log root)."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.ingest import steps

    settings = load_settings()
    retries = settings.ingest.task_retries
    plan = steps.list_new_objects.with_options(retries=retries)(settings, source)
    results, run_id = [], None
    if plan.new:
        leaked_claims = steps.benchmark_test_claims_task(settings)
        validator = steps.build_validator(settings)
        run_id = steps.start_ingest_run.with_options(retries=retries)(settings, plan.root)
        for obj in plan.new:
            read = steps.read_and_parse.with_options(retries=retries)(settings, obj)
            prepared = steps.validate(validator, read, leaked_claims)
            stored = steps.store.with_options(retries=retries)(settings, read, prepared, run_id)
            results.append(stored)
    report = steps.summarise.with_options(retries=retries)(settings, plan, results, run_id)
    steps.publish_report(report)
    return report.to_dict()
