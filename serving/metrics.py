"""Prometheus metrics of one serving app, in a registry of its own (no global state):
requests, batches, slots (model, runtime, device, batching budget), the process (CPU,
memory) and, where NVML finds one, the GPU (:mod:`citeops.serving.gpu`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from citeops.serving.gpu import GpuCollector, Nvml
from citeops.serving.public import public_model_uri

if TYPE_CHECKING:
    from citeops.serving.logwriter import LogWriterStats
    from citeops.serving.slots import LoadedModel, Slots

ROUTES = (
    "/predict",
    "/predict/batch",
    "/feedback",
    "/health",
    "/ready",
    "/version",
    "/metrics",
    "/admin/deploy",
    "/admin/rollback",
    "/docs",
    "/openapi.json",
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ServingMetrics:
    """Request counts and latencies by route, batch sizes, queue depth, live models."""

    registry: Any
    requests: Any
    latency: Any
    batch_size: Any
    batch_seconds: Any
    queue_depth: Any
    model_info: Any
    swaps: Any
    deploy_failures: Any
    log_lines: Any
    log_dropped: Any
    runtime_info: Any = None  # citeops_slot_runtime_info (None: not reported)
    batch_budget: Any = None  # citeops_slot_batch_budget (None: not reported)

    def route_label(self, path: str) -> str:
        """Known routes by name, anything else as ``other`` (bounded label values)."""
        return path if path in ROUTES else "other"

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def build_metrics(gpu: GpuCollector | None = None) -> ServingMetrics:
    """A fresh registry with the process collector (CPU seconds, resident memory) and the
    GPU collector (default: NVML, loaded at the first scrape)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(gpu or GpuCollector(Nvml()))
    return ServingMetrics(
        registry=registry,
        requests=Counter(
            "citeops_http_requests_total",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "citeops_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        batch_size=Histogram(
            "citeops_batch_size",
            "Pairs per model forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        ),
        batch_seconds=Histogram(
            "citeops_batch_duration_seconds",
            "Time of one model forward pass.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        queue_depth=Gauge("citeops_queue_depth", "Pairs waiting for the model.", registry=registry),
        model_info=Gauge(
            "citeops_slot_model_info",
            "One series per slot holding a model: 1 if live, 0 if idle.",
            ["slot", "model_version", "model_uri"],
            registry=registry,
        ),
        swaps=Counter(
            "citeops_slot_swaps_total",
            "Live-pointer switches by kind.",
            ["kind"],
            registry=registry,
        ),
        deploy_failures=Counter(
            "citeops_deploy_failures_total",
            "Deploys refused because the candidate failed to load or to pass smoke checks.",
            registry=registry,
        ),
        log_lines=Gauge(
            "citeops_log_lines_written",
            "Log lines handed to the part files, by stream.",
            ["stream"],
            registry=registry,
        ),
        log_dropped=Gauge(
            "citeops_log_lines_dropped", "Log lines dropped (queue full).", registry=registry
        ),
        runtime_info=Gauge(
            "citeops_slot_runtime_info",
            "One series per slot holding a model: its inference runtime, precision, device "
            "and why that runtime serves (basis); 1 if live, 0 if idle.",
            ["slot", "runtime", "precision", "device", "basis"],
            registry=registry,
        ),
        batch_budget=Gauge(
            "citeops_slot_batch_budget",
            "Micro-batching budget of each slot's model, for its runtime: max_batch_size "
            "(pairs), max_batch_tokens (padded tokens), max_wait_ms.",
            ["slot", "runtime", "limit"],
            registry=registry,
        ),
    )


def refresh_gauges(
    metrics: ServingMetrics, slots: Slots, log_stats: LogWriterStats, queue_depth: int
) -> None:
    """Set the gauges that mirror state (slot models, log counters, queue depth) just
    before the registry is rendered."""
    info = metrics.model_info
    info.clear()
    for gauge in (metrics.runtime_info, metrics.batch_budget):
        if gauge is not None:
            gauge.clear()
    live_name = slots.live[0]
    for name, model in slots.models.items():
        if model is not None:
            uri = public_model_uri(model.model_uri)  # no paths: /metrics is public
            info.labels(name, model.model_version, uri).set(int(name == live_name))
            _slot_runtime(metrics, name, model, live=name == live_name)
    for stream, count in log_stats.lines.items():
        metrics.log_lines.labels(stream).set(count)
    metrics.log_dropped.set(log_stats.dropped)
    metrics.queue_depth.set(queue_depth)


def _slot_runtime(metrics: ServingMetrics, slot: str, model: LoadedModel, live: bool) -> None:
    """The slot's runtime series and its batching budget."""
    if metrics.runtime_info is not None:
        labels = (slot, model.runtime, model.precision, model.device, model.runtime_basis)
        metrics.runtime_info.labels(*labels).set(int(live))
    if metrics.batch_budget is not None and model.batching is not None:
        for limit, value in model.batching.as_dict().items():
            if value is not None:
                metrics.batch_budget.labels(slot, model.runtime, limit).set(value)
