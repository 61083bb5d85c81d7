"""The Grafana dashboard's PromQL against a real Prometheus scraping a real endpoint.

A real uvicorn endpoint (tiny models) is scraped every second by Debian's ``prometheus``
started on a free port with the repository's scrape config; traffic of known size goes
through two model versions (a blue-green deploy between them). Every query of
``serving/monitoring/grafana-dashboard.json`` must return data, and the feedback rate,
the per-version agreement, the per-version traffic and the per-client requests must
equal a hand count of that traffic.

``DASHBOARD_PNG=docs/dashboard.png`` also writes the rendered panels there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from citeops.configs.settings import load_settings
from tests.integration.prometheus_support import (
    dashboard_targets,
    finite,
    prometheus_missing,
    query,
    render_dashboard,
    running_prometheus,
    scrape_config,
    values,
    wait_for,
)
from tests.integration.serve_support import running_server, save_tiny_model

pytestmark = pytest.mark.integration
TOKEN = "test-admin-token"
CLIENTS = [f"client-{i}" for i in range(4)]
LABELS = ("SUPPORT", "NEI", "REFUTE")


@dataclass
class Traffic:
    """What was sent, counted by hand."""

    predictions: dict[str, int] = field(default_factory=dict)  # per model version
    feedback: dict[str, int] = field(default_factory=dict)
    agree: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # user labels sent
    client_requests: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


def pair(i: int) -> dict[str, str]:
    """Texts of different lengths, so the length histograms spread."""
    return {
        "claim": f"Claim {i}: aspirin lowers the risk of cancer" + " in adults" * (i % 5),
        "evidence": "Daily aspirin use was associated with fewer cancers. " * (1 + i % 7),
    }


def send_wave(base: str, traffic: Traffic, n: int, feedback_every: int, agree_every: int) -> None:
    """``n`` predictions round-robin over the clients; feedback on every
    ``feedback_every``-th, agreeing with the model on every ``agree_every``-th of those."""
    given = 0
    for i in range(n):
        client = CLIENTS[i % len(CLIENTS)]
        headers = {"X-Client-Id": client}
        answer = httpx.post(base + "/predict", json=pair(i), headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        version = body["model_version"]
        traffic.count(traffic.predictions, version)
        traffic.count(traffic.client_requests, client)
        if i % feedback_every:
            continue
        agrees = given % agree_every == 0
        given += 1
        label = body["label"] if agrees else next(x for x in LABELS if x != body["label"])
        sent = {**pair(i), "request_id": body["request_id"], "user_label": label}
        accepted = httpx.post(base + "/feedback", json=sent, headers=headers, timeout=30)
        assert accepted.status_code == 202, accepted.text
        traffic.count(traffic.feedback, version)
        traffic.count(traffic.agree, version, int(agrees))
        traffic.count(traffic.labels, label)
        traffic.count(traffic.client_requests, client)


def total(table: dict[str, int]) -> int:
    return sum(table.values())


def gpu_for_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    """The GPU gauges' source: the real NVML where it finds a GPU, else the fake two-device
    NVML of the GPU unit tests (so the GPU panels' queries are checked too)."""
    from citeops.serving import metrics
    from citeops.serving.gpu import GpuCollector, Nvml
    from tests.code.test_serve_gpu import FakeNvml

    if GpuCollector(Nvml()).readings():
        return "nvml"
    monkeypatch.setattr(metrics, "Nvml", lambda: Nvml(load=FakeNvml))
    return "a simulated NVML (no GPU here)"


@pytest.fixture
def prometheus_needed() -> None:
    reason = prometheus_missing()
    if reason:
        pytest.skip(reason)


def test_dashboard_queries_return_data_and_equal_a_hand_count(
    prometheus_needed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.serving.app import create_app

    gpu_source = gpu_for_the_endpoint(monkeypatch)
    models = {v: save_tiny_model(tmp_path / f"model-{v}", seed=i) for i, v in enumerate("ab")}
    settings = load_settings(
        profile="test",
        home=tmp_path / "home",
        admin_token=TOKEN,
        serve={"log_part_max_seconds": 0.3, "precision": "fp32"},
        feedback={"rate_per_minute": 6000, "rate_burst": 1000},
    )
    with running_server(create_app(settings, str(models["a"]))) as endpoint:
        scrape = scrape_config(endpoint.removeprefix("http://"))
        with running_prometheus(scrape, tmp_path / "prom") as prom:
            start = time.time()
            wait_for(prom, 'sum(up{job="citeops-serving"})', 1.0)
            traffic = send_traffic(endpoint, models["b"])
            wait_for(prom, "sum(citeops_predictions_total)", total(traffic.predictions))
            wait_for(prom, "sum(citeops_feedback_total)", total(traffic.feedback))
            time.sleep(2.5)  # a few more scrapes: the rate windows see the last wave
            end = time.time()

            empty = [
                f"{title} / {legend}: {promql}"
                for title, legend, promql in dashboard_targets()
                if not finite(query(prom, promql, end))
            ]
            assert not empty, f"queries without data (GPU gauges from {gpu_source}): {empty}"
            assert_hand_count(prom, traffic, end)

            note = f"this test's traffic; GPU gauges from {gpu_source}"
            png = render_dashboard(prom, start, end, tmp_path / "dashboard.png", note)
            assert png.stat().st_size > 20_000
            wanted = os.environ.get("DASHBOARD_PNG")
            if wanted:
                render_dashboard(prom, start, end, Path(wanted), note)


def send_traffic(endpoint: str, second_model: Path) -> Traffic:
    """Waves of traffic a few scrapes apart (rates need increases between scrapes) on the
    first model, then on ``second_model`` (deployed blue-green), then one anonymous
    request; returns the hand count."""
    traffic = Traffic()
    send_wave(endpoint, traffic, n=24, feedback_every=2, agree_every=3)
    time.sleep(2.5)
    send_wave(endpoint, traffic, n=16, feedback_every=4, agree_every=2)
    deployed = httpx.post(
        endpoint + "/admin/deploy",
        json={"model_uri": str(second_model)},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    assert deployed.status_code == 200, deployed.text
    time.sleep(2.5)
    send_wave(endpoint, traffic, n=20, feedback_every=2, agree_every=2)
    time.sleep(2.5)
    send_wave(endpoint, traffic, n=12, feedback_every=3, agree_every=4)
    answer = httpx.post(endpoint + "/predict", json=pair(0), timeout=30)  # names no client
    assert answer.status_code == 200
    traffic.count(traffic.predictions, answer.json()["model_version"])
    traffic.count(traffic.client_requests, "anonymous")
    assert set(traffic.predictions) == {"model-a", "model-b"}
    return traffic


def assert_hand_count(prom: str, traffic: Traffic, at: float) -> None:
    """The dashboard's since-start figures, and the counters per version, label, client,
    arm and source, equal the hand count."""
    targets = {title: promql for title, _, promql in dashboard_targets()}
    rate = values(query(prom, targets["Feedback rate since start"], at))
    assert rate[""] == pytest.approx(total(traffic.feedback) / total(traffic.predictions))
    agreement = query(prom, targets["Agreement since start, per version"], at)
    assert values(agreement, "model_version") == pytest.approx(
        {v: traffic.agree[v] / traffic.feedback[v] for v in traffic.feedback}
    )
    by_version = "sum by (model_version) (citeops_predictions_total)"
    assert values(query(prom, by_version, at), "model_version") == traffic.predictions
    by_label = "sum by (user_label) (citeops_feedback_total)"
    assert values(query(prom, by_label, at), "user_label") == traffic.labels
    by_client = "sum by (client) (citeops_client_requests_total)"
    assert values(query(prom, by_client, at), "client") == traffic.client_requests
    arms = query(prom, "count by (arm, source) (citeops_predictions_total)", at)
    assert {(x["metric"]["arm"], x["metric"]["source"]) for x in arms} == {("champion", "api")}
