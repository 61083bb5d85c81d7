"""The drift alert hook: a JSON POST to ``drift.alert_webhook_url`` when drift is found.

:func:`post_alert` makes one delivery; retries belong to the caller (the ``monitor``
flow wraps it in a Prefect task with retries, see :mod:`~citeops.tasks.drift.steps`;
connection failures are also retried by httpx's transport). :func:`alert_if_drift` never
raises: an alert that cannot be delivered must not hide the drift result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from citeops.tasks.drift.detect import DriftReport
from citeops.tasks.errors import CiteopsError

logger = logging.getLogger(__name__)

CONNECT_RETRIES = 2  # httpx transport retries: connection errors only, not HTTP answers


class AlertDeliveryError(CiteopsError):
    """The webhook could not be reached or answered 5xx (a retry may succeed)."""


@dataclass(frozen=True)
class AlertDelivery:
    """What became of an alert: delivered (``sent``), the status code, or the error."""

    url: str
    sent: bool
    status_code: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record kept in the drift summary (``alert``): only the fields that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def alert_payload(report: DriftReport) -> dict[str, Any]:
    """What the webhook receives: the verdict, the drifted checks and where the report is."""
    return {
        "event": "citeops.drift",
        "status": report.status,
        "drift": report.drift,
        "drifted_checks": report.drifted_checks,
        "checks": {c.name: c.summary() for c in report.checks if c.drift},
        "current_rows": report.current_rows,
        "report": report.report,
        "mlflow_run_id": report.mlflow_run_id,
        "created_at": report.created_at,
        "text": f"citeops: drift in {', '.join(report.drifted_checks)} "
        f"({report.current_rows} queries); report {report.report}",
    }


def post_alert(url: str, payload: dict[str, Any], timeout: float = 10.0) -> AlertDelivery:
    """POST ``payload`` as JSON once. A 4xx answer is returned as not sent (the same
    payload would be refused again).

    Raises:
        AlertDeliveryError: the webhook cannot be reached or answers 5xx.
    """
    import httpx

    transport = httpx.HTTPTransport(retries=CONNECT_RETRIES)
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.post(url, json=payload)
    except httpx.HTTPError as exc:
        raise AlertDeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500:
        raise AlertDeliveryError(f"HTTP {response.status_code}")
    return AlertDelivery(url, response.is_success, status_code=response.status_code)


def alert_if_drift(
    report: DriftReport,
    url: str | None,
    timeout: float = 10.0,
    post: Callable[[str, dict[str, Any], float], AlertDelivery] = post_alert,
) -> AlertDelivery | None:
    """Send the alert with ``post`` when the report found drift and a webhook is
    configured; the delivery record is also kept on ``report.alert``. Never raises."""
    if not report.drift or not url:
        return None
    try:
        report.alert = post(url, alert_payload(report), timeout)
    except AlertDeliveryError as exc:
        logger.warning("drift alert to %s not delivered: %s", url, exc)
        report.alert = AlertDelivery(url, False, error=str(exc))
    else:
        logger.info("drift alert to %s: HTTP %s", url, report.alert.status_code)
    return report.alert
