"""Usage metrics of the endpoint: predictions and feedback per version, arm and source,
agreement as a counter pair, and requests per client with a bounded number of series."""

from __future__ import annotations

import pytest

from citeops.serving.metrics import build_metrics


def sample(metrics, name: str, **labels: str) -> float:  # noqa: ANN001
    return metrics.registry.get_sample_value(name, labels) or 0.0


def client_series(metrics) -> dict[str, float]:  # noqa: ANN001
    (family,) = [f for f in metrics.registry.collect() if f.name == "citeops_client_requests"]
    return {s.labels["client"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_predictions_feedback_and_agreement_are_counted_per_version_and_source() -> None:
    metrics = build_metrics()
    usage = metrics.usage
    for _ in range(3):
        usage.record_prediction("1", "a claim", "x" * 300)
    usage.record_prediction("2", "claim", "evidence", source="app")
    usage.record_feedback("1", "SUPPORT", "SUPPORT")
    usage.record_feedback("1", "NEI", "REFUTE")
    usage.record_feedback(None, None, "NEI", source="app")  # unknown version and prediction

    served = {"arm": "champion", "source": "api"}
    assert sample(metrics, "citeops_predictions_total", model_version="1", **served) == 3
    assert sample(
        metrics, "citeops_predictions_total", model_version="2", arm="champion", source="app"
    )
    assert sample(metrics, "citeops_feedback_judged_total", model_version="1", **served) == 2
    assert sample(metrics, "citeops_feedback_agree_total", model_version="1", **served) == 1
    unknown = {"model_version": "unknown", "arm": "champion", "source": "app"}
    assert sample(metrics, "citeops_feedback_total", user_label="NEI", **unknown) == 1
    assert sample(metrics, "citeops_feedback_judged_total", **unknown) == 0
    assert sample(metrics, "citeops_evidence_length_chars_count", source="api") == 3
    assert sample(metrics, "citeops_evidence_length_chars_bucket", source="api", le="250.0") == 0
    assert sample(metrics, "citeops_evidence_length_chars_bucket", source="api", le="500.0") == 3
    with pytest.raises(ValueError, match="source"):
        usage.record_prediction("1", "c", "e", source="web")


def test_only_the_busiest_clients_keep_a_label_of_their_own() -> None:
    metrics = build_metrics(top_clients=2)
    record = metrics.usage.record_client
    for client, times in (("a", 5), ("b", 3), ("c", 1), ("d", 1)):
        for _ in range(times):
            record(client)
    record(None)  # no client: anonymous, which competes for a place like any client
    assert client_series(metrics) == {"a": 5, "b": 3, "other": 3}

    for _ in range(4):  # c overtakes b (c: 5 requests > b: 3): b's series goes
        record("c")
    # c is counted under its own name from its 4th request on; b's 3 leave with its series
    assert client_series(metrics) == {"a": 5, "c": 2, "other": 5}

    for i in range(2000):  # many one-off clients never add series nor displace a busy one
        record(f"one-off-{i}")
    assert client_series(metrics) == {"a": 5, "c": 2, "other": 2005}
    assert len(metrics.usage.clients.counts) <= metrics.usage.clients.tracked
