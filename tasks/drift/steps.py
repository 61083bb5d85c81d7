"""Thin Prefect tasks over the drift functions, for the ``monitor`` flow.

The tasks run the same functions as ``citeops drift`` (:mod:`~citeops.tasks.drift.monitor`);
only the alert's delivery gains Prefect retries. No caching: every run must read the
window as it is now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.drift.alert import AlertDelivery, post_alert
from citeops.tasks.drift.detect import DriftReport
from citeops.tasks.drift.monitor import alert_on_drift, check_drift
from citeops.tasks.drift.report import render_markdown

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

ALERT_RETRY_DELAYS = [2, 5, 15]
ARTIFACT_KEY = "drift-report"


@task(name="detect-drift", cache_policy=NO_CACHE)
def drift_report(
    settings: Settings,
    current_dir: str | None = None,
    reference_datasets: list[str] | None = None,
    model_uri: str | None = None,
) -> DriftReport:
    """:func:`~citeops.tasks.drift.monitor.check_drift`: the report, written and logged."""
    return check_drift(settings, current_dir, reference_datasets, model_uri)


@task(
    name="post-drift-alert",
    retries=len(ALERT_RETRY_DELAYS),
    retry_delay_seconds=ALERT_RETRY_DELAYS,
    cache_policy=NO_CACHE,
)
def post_drift_alert(url: str, payload: dict[str, Any], timeout: float) -> AlertDelivery:
    """One delivery (:func:`~citeops.tasks.drift.alert.post_alert`), retried by Prefect
    when the webhook cannot be reached or answers 5xx."""
    return post_alert(url, payload, timeout)


@task(name="alert-drift", cache_policy=NO_CACHE)
def alert_drift(settings: Settings, report: DriftReport) -> DriftReport:
    """The webhook alert when ``report`` found drift; returns the report with its delivery
    record (``alert``). A delivery that still fails after the retries is recorded, not
    raised."""
    alert_on_drift(settings, report, post=post_drift_alert)
    return report


@task(name="publish-drift-artifact", cache_policy=NO_CACHE)
def publish_drift_report(report: DriftReport) -> None:
    """The report's markdown summary as a Prefect artifact (key ``drift-report``)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=render_markdown(report),
        key=ARTIFACT_KEY,
        description=f"drift: {report.status}",
    )
