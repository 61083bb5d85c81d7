"""Prometheus metrics of one serving app, in a registry of its own (no global state):
requests, batches, slots (model, runtime, device, batching budget), the process (CPU,
memory), where NVML finds one the GPU (:mod:`citeops.serving.gpu`), and usage
(:class:`UsageMetrics`: predictions and feedback per model version, arm and source,
agreement with users, label mix, requests per client, text lengths).

Every label has a bounded set of values: routes are named or ``other``, clients are the
busiest :data:`TOP_CLIENTS` or ``other``, labels and sources come from fixed lists, and
model versions change only with a deploy."""

from __future__ import annotations

import threading
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
    "/admin/ab",
    "/admin/ab/start",
    "/admin/ab/stop",
    "/docs",
    "/openapi.json",
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLAIM_CHARS_BUCKETS = (25, 50, 100, 200, 400, 800, 1600)
EVIDENCE_CHARS_BUCKETS = (100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000)
# to become a setting (serve.metrics_top_clients): clients with a label of their own
TOP_CLIENTS = 20
CHAMPION = "champion"  # the arm of every answer outside an A/B experiment
SOURCES = ("api", "app")
CLIENT_ROUTES = ("/predict", "/predict/batch", "/feedback")  # requests counted per client
ANONYMOUS = "anonymous"  # a request that names no client
OTHER = "other"  # every client outside the top ones
UNKNOWN = "unknown"  # feedback whose model version is not known
MAX_CLIENT_CHARS = 128


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
    usage: UsageMetrics | None = None  # predictions, feedback, clients (None: not reported)
    shadow: Any = None  # citeops_shadow_copies_total{outcome} (None: not reported)
    evidence_cache: Any = None  # citeops_evidence_cache{slot, stat} (None: not reported)

    def count_shadow(self, outcome: str) -> None:
        """Count one shadow copy ``scored`` or ``dropped``."""
        if self.shadow is not None:
            self.shadow.labels(outcome).inc()

    def route_label(self, path: str) -> str:
        """Known routes by name, anything else as ``other`` (bounded label values)."""
        return path if path in ROUTES else "other"

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class TopClients:
    """``citeops_client_requests_total{client}`` with at most ``top + 1`` live series.

    A client keeps a label of its own while it is among the ``top`` busiest seen (by
    requests counted here); the others are counted as ``other``. When a busier client
    takes a place, the one it displaces loses its series (its requests so far leave with
    it: sum ``rate()`` over clients, not raw counter values). Counts are kept for at most
    ``tracked`` clients (Space-Saving: a new client past that replaces the least busy
    unlabelled one and inherits its count as a possible overcount), so memory is bounded
    as well; a client takes a place only on requests it surely made (count less
    overcount), so a stream of one-off clients never displaces a busy one."""

    def __init__(self, counter: Any, top: int = TOP_CLIENTS, tracked: int | None = None) -> None:
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        self.counter = counter
        self.top = top
        self.tracked = max(tracked or 50 * top, top + 1)
        self.counts: dict[str, int] = {}
        self.overcount: dict[str, int] = {}
        self.labelled: set[str] = set()
        self._lock = threading.Lock()

    def record(self, client_id: str | None) -> str:
        """Count one request of ``client_id`` (None or blank: ``anonymous``); returns the
        label it was counted under."""
        client = (client_id or "").strip()[:MAX_CLIENT_CHARS] or ANONYMOUS
        with self._lock:
            self._track(client)
            label = self._label(client)
            self.counter.labels(label).inc()
        return label

    def _track(self, client: str) -> None:
        if client not in self.counts and len(self.counts) >= self.tracked:
            spare = [c for c in self.counts if c not in self.labelled]
            least = min(spare, key=self.counts.__getitem__)
            self.overcount.pop(least, None)
            self.counts[client] = self.overcount[client] = self.counts.pop(least)
        self.counts[client] = self.counts.get(client, 0) + 1

    def _label(self, client: str) -> str:
        if client in self.labelled:
            return client
        if client == OTHER:  # a client named "other" cannot be told apart from the rest
            return OTHER
        if len(self.labelled) < self.top:
            self.labelled.add(client)
            return client
        weakest = min(self.labelled, key=self.counts.__getitem__)
        if self.counts[client] - self.overcount.get(client, 0) <= self.counts[weakest]:
            return OTHER
        self.labelled.discard(weakest)
        self.counter.remove(weakest)
        self.labelled.add(client)
        return client


@dataclass
class UsageMetrics:
    """How people use the endpoint: what was predicted and fed back, by whom, how long.

    Predictions and feedback carry ``model_version``, ``arm`` (``champion``, or
    ``challenger`` for an A/B experiment's share) and ``source`` (``api`` | ``app``).
    Agreement is a pair of counters over the feedback whose model prediction is known, so
    PromQL divides them."""

    predictions: Any
    feedback: Any
    feedback_judged: Any
    feedback_agree: Any
    claim_chars: Any
    evidence_chars: Any
    clients: TopClients

    def record_prediction(
        self,
        model_version: str,
        claim: str,
        evidence: str,
        *,
        arm: str = CHAMPION,
        source: str = "api",
    ) -> None:
        """Count one answered pair and observe its text lengths (characters)."""
        source = _source(source)
        self.predictions.labels(model_version, arm, source).inc()
        self.claim_chars.labels(source).observe(len(claim))
        self.evidence_chars.labels(source).observe(len(evidence))

    def record_feedback(
        self,
        model_version: str | None,
        prediction: str | None,
        user_label: str,
        *,
        arm: str = CHAMPION,
        source: str = "api",
    ) -> None:
        """Count one accepted feedback item; where the model's ``prediction`` is known, count
        it toward agreement (``user_label == prediction``)."""
        version, source = model_version or UNKNOWN, _source(source)
        self.feedback.labels(version, arm, source, user_label).inc()
        if prediction:
            self.feedback_judged.labels(version, arm, source).inc()
            if prediction == user_label:
                self.feedback_agree.labels(version, arm, source).inc()

    def record_client(self, client_id: str | None) -> str:
        """Count one request of ``client_id`` (:class:`TopClients`)."""
        return self.clients.record(client_id)


def _source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return source


def build_usage(registry: Any, top_clients: int = TOP_CLIENTS) -> UsageMetrics:
    """The usage counters and histograms, registered on ``registry``."""
    from prometheus_client import Counter, Histogram

    served = ["model_version", "arm", "source"]
    return UsageMetrics(
        predictions=Counter(
            "citeops_predictions_total",
            "Pairs answered, by model version, arm and source.",
            served,
            registry=registry,
        ),
        feedback=Counter(
            "citeops_feedback_total",
            "Feedback items accepted, by model version, arm, source and the user's label.",
            [*served, "user_label"],
            registry=registry,
        ),
        feedback_judged=Counter(
            "citeops_feedback_judged_total",
            "Feedback items whose model prediction is known (the denominator of agreement).",
            served,
            registry=registry,
        ),
        feedback_agree=Counter(
            "citeops_feedback_agree_total",
            "Feedback items whose user label equals the model's prediction.",
            served,
            registry=registry,
        ),
        claim_chars=Histogram(
            "citeops_claim_length_chars",
            "Characters per claim answered.",
            ["source"],
            buckets=CLAIM_CHARS_BUCKETS,
            registry=registry,
        ),
        evidence_chars=Histogram(
            "citeops_evidence_length_chars",
            "Characters per evidence answered (sentences joined by spaces).",
            ["source"],
            buckets=EVIDENCE_CHARS_BUCKETS,
            registry=registry,
        ),
        clients=TopClients(
            Counter(
                "citeops_client_requests_total",
                f"Requests to {', '.join(CLIENT_ROUTES)} per client: the busiest keep their "
                "id (X-Client-Id), the rest are 'other', requests naming none 'anonymous'.",
                ["client"],
                registry=registry,
            ),
            top=top_clients,
        ),
    )


def build_metrics(
    gpu: GpuCollector | None = None, top_clients: int = TOP_CLIENTS
) -> ServingMetrics:
    """A fresh registry with the process collector (CPU seconds, resident memory), the
    GPU collector (default: NVML, loaded at the first scrape) and the usage metrics
    (``top_clients`` clients keep a label of their own)."""
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
        usage=build_usage(registry, top_clients),
        shadow=Counter(
            "citeops_shadow_copies_total",
            "Requests copied to the challenger in a shadow experiment, by outcome: scored, "
            "or dropped (queue full or scoring failed).",
            ["outcome"],
            registry=registry,
        ),
        evidence_cache=Gauge(
            "citeops_evidence_cache",
            "Evidence-embedding cache of each slot's siamese model since it was loaded: "
            "hits, misses, evictions (lookups), entries and bytes held now.",
            ["slot", "stat"],
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
    for gauge in (metrics.runtime_info, metrics.batch_budget, metrics.evidence_cache):
        if gauge is not None:
            gauge.clear()
    live_name = slots.live[0]
    for name, model in slots.models.items():
        if model is not None:
            uri = public_model_uri(model.model_uri)  # no paths: /metrics is public
            info.labels(name, model.model_version, uri).set(int(name == live_name))
            _slot_runtime(metrics, name, model, live=name == live_name)
            _slot_cache(metrics, name, model)
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


def _slot_cache(metrics: ServingMetrics, slot: str, model: LoadedModel) -> None:
    """The slot's evidence-cache counts (a siamese model with a cache only)."""
    cache = getattr(model.verifier, "evidence_cache", None)
    if metrics.evidence_cache is None or cache is None:
        return
    for stat, value in cache.stats().as_dict().items():
        metrics.evidence_cache.labels(slot, stat).set(value)
