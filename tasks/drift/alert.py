"""The drift alert hook: a JSON POST to ``drift.alert_webhook_url`` when drift is found."""

from __future__ import annotations

import time
from typing import Any

from citeops.tasks.drift.detect import DriftReport


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


def send_alert(
    url: str, payload: dict[str, Any], timeout: float = 10.0, attempts: int = 3
) -> dict[str, Any]:
    """POST ``payload`` as JSON; retries on errors and 5xx.

    Never raises: an alert that cannot be delivered must not hide the drift result; the
    returned record says whether it was delivered (``sent``), the status code or the error.
    """
    import httpx

    error = ""
    for attempt in range(attempts):
        try:
            response = httpx.post(url, json=payload, timeout=timeout)
            if response.status_code < 500:
                return {
                    "url": url,
                    "sent": response.is_success,
                    "status_code": response.status_code,
                }
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if attempt + 1 < attempts:
            time.sleep(0.5 * 2**attempt)
    return {"url": url, "sent": False, "error": error}


def alert_if_drift(
    report: DriftReport, url: str | None, timeout: float = 10.0
) -> dict[str, Any] | None:
    """Send the alert when the report found drift and a webhook is configured; the
    delivery record is also kept on ``report.alert``."""
    if not report.drift or not url:
        return None
    report.alert = send_alert(url, alert_payload(report), timeout)
    return report.alert
