"""The app's Monitoring tab: figures read from the endpoint's own Prometheus registry
(the counters behind ``/metrics``), so the tab and a Prometheus scrape always agree.

Per model version: predictions, feedback, feedback rate (feedback / predictions),
agreement with users (feedback whose label equals the model's prediction / feedback
whose prediction is known); for ``/predict``: latency p50 and p95 estimated from the
request-duration histogram's buckets as Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PREDICTIONS = "citeops_predictions_total"
FEEDBACK = "citeops_feedback_total"
JUDGED = "citeops_feedback_judged_total"
AGREE = "citeops_feedback_agree_total"
LATENCY_BUCKET = "citeops_http_request_duration_seconds_bucket"
LATENCY_ROUTE = "/predict"
HEADERS = ["model version", "predictions", "feedback", "feedback rate", "agreement"]


@dataclass(frozen=True)
class VersionUsage:
    """One model version's traffic and what its users said."""

    model_version: str
    predictions: float
    feedback: float
    judged: float
    agree: float

    @property
    def feedback_rate(self) -> float | None:
        return self.feedback / self.predictions if self.predictions else None

    @property
    def agreement(self) -> float | None:
        return self.agree / self.judged if self.judged else None

    def row(self) -> list[str]:
        return [
            self.model_version,
            f"{self.predictions:.0f}",
            f"{self.feedback:.0f}",
            _percent(self.feedback_rate),
            _percent(self.agreement),
        ]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _samples(registry: Any) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def per_version(registry: Any) -> list[VersionUsage]:
    """Usage per model version, sorted by version (counters summed over arm and source)."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, labels, value in _samples(registry):
        if name in (PREDICTIONS, FEEDBACK, JUDGED, AGREE) and "model_version" in labels:
            sums[labels["model_version"]][name] += value
    return [
        VersionUsage(version, c[PREDICTIONS], c[FEEDBACK], c[JUDGED], c[AGREE])
        for version, c in sorted(sums.items())
    ]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, interpolated
    linearly within its bucket (None: no observations)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the largest finite bucket: its bound, as Prometheus
            return lower + (bound - lower) * (rank - below) / ((count - below) or 1.0)
        lower, below = bound, count
    return lower


def predict_latency(registry: Any) -> tuple[float | None, float | None]:
    """``/predict`` latency p50 and p95 in seconds (None: no request yet)."""
    buckets = [
        (float(labels["le"]), value)
        for name, labels, value in _samples(registry)
        if name == LATENCY_BUCKET and labels.get("route") == LATENCY_ROUTE
    ]
    return histogram_quantile(0.5, buckets), histogram_quantile(0.95, buckets)


def summary_markdown(registry: Any) -> str:
    """The totals and latency line above the per-version table."""
    rows = per_version(registry)
    predictions = sum(r.predictions for r in rows)
    feedback = sum(r.feedback for r in rows)
    judged, agree = sum(r.judged for r in rows), sum(r.agree for r in rows)
    p50, p95 = predict_latency(registry)

    def ms(seconds: float | None) -> str:
        return "–" if seconds is None else f"{1000 * seconds:.0f} ms"

    return (
        f"**{predictions:.0f}** predictions · **{feedback:.0f}** feedback · feedback rate "
        f"**{_percent(feedback / predictions if predictions else None)}** · agreement with "
        f"users **{_percent(agree / judged if judged else None)}** · `/predict` latency "
        f"p50 **{ms(p50)}**, p95 **{ms(p95)}** (since this process started; the same "
        "counters as `/metrics`)"
    )


def version_rows(registry: Any) -> list[list[str]]:
    """The per-version table's rows (:data:`HEADERS`)."""
    return [usage.row() for usage in per_version(registry)]
