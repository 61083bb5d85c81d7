"""Drift end to end on the shared data: windows, detection, report, reference predictions,
MLflow logging, the alert hook (a real local HTTP server), the trigger and the CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.data.multivers import LABELS, Example, read_split
from citeops.tasks.drift.current import load_current_window, read_query_folder, window_from_records
from citeops.tasks.drift.detect import CHECK_NAMES, detect_drift
from citeops.tasks.drift.reference import (
    ReferencePredictions,
    load_reference,
    reference_predictions,
)
from citeops.tasks.drift.report import render_markdown, write_report


def query_records(examples: list[Example], seed: int = 0) -> list[dict[str, Any]]:
    """Query-log lines for examples, with random but valid probabilities."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, ex in enumerate(examples):
        probs = rng.dirichlet([2, 2, 2])
        rows.append(
            {
                "request_id": f"r{i}",
                "datetime": "2026-11-20T10:00:00+00:00",
                "claim": ex.claim,
                "evidence": ex.evidence,
                "model_version": "1",
                "slot": "blue",
                "prediction": LABELS[int(probs.argmax())],
                "probabilities": dict(zip(LABELS, map(float, probs), strict=True)),
                "latency_ms": 5.0,
            }
        )
    return rows


def write_query_log(
    root: Path, rows: list[dict[str, Any]], day: str = "2026-11-20", name: str = "part-0000.jsonl"
) -> Path:
    folder = root / "queries" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def scifact_dev(data_dir: Path) -> list[Example]:
    return read_split(data_dir, "scifact", "dev")


@pytest.fixture
def citint_dev(data_dir: Path) -> list[Example]:
    return read_split(data_dir, "citint", "dev")


def test_query_folder_skips_partial_files_and_old_partitions(
    tmp_path: Path, scifact_dev: list[Example]
) -> None:
    rows = query_records(scifact_dev[:10])
    write_query_log(tmp_path, rows[:4])
    write_query_log(tmp_path, rows[4:6], name=".part-0001.jsonl")  # being written
    write_query_log(tmp_path, rows[6:8], name="part-0002.jsonl.tmp")
    old = write_query_log(tmp_path, rows[8:], day="2026-10-01")
    old.write_text(old.read_text() + "not json\n")
    (tmp_path / "queries" / "date=2026-11-20" / "part-0000.jsonl").open("a").write('{"claim": 1}\n')
    window = read_query_folder(tmp_path, since=datetime(2026, 11, 1, tzinfo=UTC))
    assert len(window) == 4 and window.files == 1 and window.skipped_lines == 1
    everything = read_query_folder(tmp_path / "queries")
    assert len(everything) == 6 and everything.skipped_lines == 2
    assert window.confidences[0] == pytest.approx(max(rows[0]["probabilities"].values()))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert len(read_query_folder(plain)) == 3


def test_window_keeps_per_row_figures_and_the_texts_of_a_seeded_sample(tmp_path: Path) -> None:
    examples = [
        Example(f"claim number {i} " + "word " * (i % 7), f"evidence {i % 150} text", 0)
        for i in range(300)
    ]
    rows = query_records(examples)
    rows += rows[:40]  # repeated queries: 340 rows, 300 distinct
    write_query_log(tmp_path, rows)
    window = read_query_folder(tmp_path, sample_size=50, seed=1)
    assert len(window) == 340
    assert (window.distinct_rows(), window.distinct_claims(), window.distinct_evidences()) == (
        300,
        300,
        150,
    )
    assert list(window.claim_length_array()) == [len(r["claim"].split()) for r in rows]
    assert list(window.evidence_length_array()) == [len(r["evidence"].split()) for r in rows]
    assert window.confidence_array()[5] == pytest.approx(max(rows[5]["probabilities"].values()))
    # only the sample's texts are kept: aligned pairs of real rows, drawn from the whole
    # window (reservoir), not its head, and the same for the same seed
    claims, evidences = window.sample_claims, window.sample_evidences
    assert len(claims) == len(evidences) == 50
    pairs = {(r["claim"], r["evidence"]) for r in rows}
    assert set(zip(claims, evidences, strict=True)) <= pairs
    late = {r["claim"] for r in rows[200:300]}
    assert any(c in late for c in claims)
    assert read_query_folder(tmp_path, sample_size=50, seed=1).sample_claims == claims
    assert read_query_folder(tmp_path, sample_size=50, seed=2).sample_claims != claims
    assert window_from_records(rows[:30], sample_size=50).sample_claims == [
        r["claim"] for r in rows[:30]
    ]


def test_small_window_gives_not_enough_data(scifact_dev: list[Example]) -> None:
    settings = load_settings()
    reference = load_reference(settings, ["scifact"])
    report = detect_drift(
        reference, window_from_records(query_records(scifact_dev[:29])), settings.drift
    )
    assert report.status == "not enough data" and report.drift is None
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert all(c.drift is None and c.status == "not enough data" for c in report.checks)


def test_same_source_no_drift_other_source_drift(
    scifact_dev: list[Example], citint_dev: list[Example]
) -> None:
    settings = load_settings()
    reference = load_reference(settings, ["scifact"])
    same = detect_drift(reference, window_from_records(query_records(scifact_dev)), settings.drift)
    other = detect_drift(reference, window_from_records(query_records(citint_dev)), settings.drift)
    text = ("claim_text", "evidence_text")
    # the same source: classifiers near chance (the verdict's false-alarm rate is measured
    # by `citeops bench drift-calibration`, not asserted on one split)
    assert all(c.statistic < 0.6 for c in same.checks if c.name in text)
    assert not any(c.drift for c in same.checks if c.kind in ("length", "oov"))
    assert all(c.drift and c.statistic > 0.9 for c in other.checks if c.name in text)
    assert other.drift is True and other.status == "drift"
    skipped = {c.name: c.note for c in same.checks if c.status == "skipped"}
    assert set(skipped) == {"label_mix_vs_reference", "label_mix_vs_training", "confidence"}
    assert all("no reference predictions" in note for note in skipped.values())


def test_report_renders_every_check(scifact_dev: list[Example], citint_dev: list[Example]) -> None:
    settings = load_settings()
    rng = np.random.default_rng(0)
    held = read_split(settings.data_dir, "scifact", "dev")[:120]
    preds = ReferencePredictions(
        "models:/x/1",
        "1",
        ("scifact",),
        LABELS,
        rng.dirichlet([3, 2, 2], len(held)).astype(np.float32),
        gold=[ex.label for ex in held],
    )
    reference = load_reference(settings, ["scifact"], preds)
    window = window_from_records(query_records(citint_dev[:200]))
    window.source = "<script>alert('x')</script>"  # text from outside is escaped
    report = detect_drift(reference, window, settings.drift)
    assert all(c.status in ("drift", "no drift") for c in report.checks)  # every check judged
    html_path, json_path = write_report(report, settings.reports_dir)
    page = html_path.read_text()
    assert html_path.parent == settings.reports_dir / "drift"
    for name in CHECK_NAMES:
        assert f'id="{name}"' in page
    for name in CHECK_NAMES:  # a chart in every check's section
        assert "<svg" in page.split(f'id="{name}"')[1].split("<section")[0]
    assert "<script" not in page and "src=" not in page and "<link" not in page  # self-contained
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    summary = json.loads(json_path.read_text())
    assert summary["drift"] is True and set(summary["checks"]) == set(CHECK_NAMES)
    assert {"statistic", "threshold", "drift"} <= set(summary["checks"]["claim_text"])
    assert summary["details"]["claim_text"]["top_terms_current"]
    assert "| claim_text |" in render_markdown(report)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> str:
    """The untrained tiny model saved as a folder that load_verifier accepts."""
    from citeops.tasks.classifier.base import load_base

    settings = load_settings()
    model, tokenizer = load_base(settings.model)
    folder = tmp_path / "tiny-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_reference_predictions_are_computed_once_per_model(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITEOPS_DRIFT__REFERENCE_SAMPLE_SIZE", "40")
    settings = load_settings()
    uri = tiny_model_dir
    preds, note = reference_predictions(settings, uri, ["scifact"])
    assert preds is not None and preds.model_uri == uri and "computed" in note
    assert preds.gold and len(preds.gold) == len(preds.probabilities)
    assert preds.probabilities.shape == (settings.drift.reference_sample_size, len(LABELS))
    assert np.allclose(preds.probabilities.sum(axis=1), 1, atol=1e-4)
    again, note2 = reference_predictions(settings, uri, ["scifact"])
    assert note2.startswith("stored") and np.allclose(again.probabilities, preds.probabilities)
    missing, why = reference_predictions(settings, "models:/claim-verifier@nope", ["scifact"])
    assert missing is None and why.startswith("no reference predictions")


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it."""
    handler = type("Recorder", (_Recorder,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", handler.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_drift_run_logs_to_mlflow_and_alerts(
    tmp_path: Path, citint_dev: list[Example], webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.tasks.drift.monitor import alert_on_drift, check_drift
    from mlflow import MlflowClient

    url, received = webhook
    monkeypatch.setenv("CITEOPS_DRIFT__ALERT_WEBHOOK_URL", url)
    settings = load_settings()
    write_query_log(tmp_path, query_records(citint_dev[:120]))
    report = check_drift(settings, tmp_path, ["scifact"])
    assert alert_on_drift(settings, report) is report.alert
    assert report.drift is True
    assert len(received) == 1 and received[0]["event"] == "citeops.drift"
    assert set(received[0]["drifted_checks"]) == set(report.drifted_checks)
    assert report.summary()["alert"] == {"url": url, "sent": True, "status_code": 204}
    client = MlflowClient(settings.mlflow.tracking_uri)
    run = client.get_run(report.mlflow_run_id)
    assert run.data.tags["drift.status"] == "drift"
    assert run.data.metrics["claim_text.drift"] == 1.0
    names = {a.path for a in client.list_artifacts(report.mlflow_run_id, "drift")}
    assert {f"drift/{Path(report.report).name}", f"drift/{Path(report.summary_path).name}"} <= names
    charts = {a.path for a in client.list_artifacts(report.mlflow_run_id, "drift/charts")}
    assert {"drift/charts/claim_text.png", "drift/charts/claim_length.png"} <= charts
    on_disk = json.loads(Path(report.summary_path).read_text())
    assert on_disk["mlflow_run_id"] == report.mlflow_run_id and on_disk["alert"]["sent"] is True


def test_alert_failure_is_recorded_not_raised() -> None:
    from citeops.tasks.drift.alert import AlertDeliveryError, alert_if_drift, post_alert
    from citeops.tasks.drift.detect import DriftReport

    with pytest.raises(AlertDeliveryError):
        post_alert("http://127.0.0.1:9/nothing", {"x": 1}, timeout=0.5)
    report = DriftReport("drift", True, [], "any", 100, {}, {})
    assert alert_if_drift(DriftReport("no drift", False, [], "any", 100, {}, {}), "x") is None
    delivery = alert_if_drift(report, "http://127.0.0.1:9/nothing", timeout=0.5)
    assert delivery is report.alert and delivery.sent is False and delivery.error
    assert set(report.summary()["alert"]) == {"url", "sent", "error"}


def test_window_without_dir_is_the_ingested_queries(
    scifact_dev: list[Example], capsys: pytest.CaptureFixture[str]
) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    settings = load_settings()
    root = Path(settings.log_root or "")
    now = datetime.now(UTC)
    recent = [{**r, "datetime": now.isoformat()} for r in query_records(scifact_dev[:40])]
    write_query_log(root, recent, day=now.date().isoformat())
    write_query_log(root, query_records(scifact_dev[40:50]), day="2000-01-01")
    assert len(load_current_window(settings)) == 0  # nothing ingested yet
    assert run_cli(app, ["ingest", "--json"]) == 0
    capsys.readouterr()
    window = load_current_window(settings)
    assert len(window) == 40 and window.source == "query store"
    assert window.confidences[0] == pytest.approx(max(recent[0]["probabilities"].values()))
