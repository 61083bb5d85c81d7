"""The app's parts without a browser: PDF evidence retrieval (pypdf + the model's BM25
ranking) and the Monitoring tab's figures read from the endpoint's registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from citeops.serving.metrics import build_metrics
from citeops.serving.ui.evidence import UnreadablePdf, pdf_text, top_sentences
from citeops.serving.ui.monitoring import histogram_quantile, per_version, summary_markdown
from citeops.serving.ui.service import new_client_id

TEXT = (
    "The cohort was followed for ten years. Diet was recorded yearly. "
    "Daily aspirin use was associated with fewer colorectal cancers. Funding was public."
)


def test_top_sentences_rank_by_bm25_and_keep_document_order() -> None:
    found = top_sentences("aspirin and colorectal cancer", TEXT, 2)
    assert [r.position for r in found] == sorted(r.position for r in found)
    assert any("aspirin" in r.sentence for r in found)
    assert top_sentences("aspirin", TEXT, 1)[0].sentence.startswith("Daily aspirin")


def test_pdf_text_reads_a_matplotlib_pdf_and_refuses_other_files(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure()
    figure.text(0.1, 0.5, "Daily aspirin use was associated with fewer cancers.")
    figure.savefig(tmp_path / "a.pdf", format="pdf")
    assert "Daily aspirin use" in pdf_text(tmp_path / "a.pdf")
    (tmp_path / "b.pdf").write_text("not a pdf")
    with pytest.raises(UnreadablePdf, match="b.pdf"):
        pdf_text(tmp_path / "b.pdf")


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.5, [(float("inf"), 0.0)]) is None


def test_monitoring_figures_equal_a_hand_count() -> None:
    metrics = build_metrics()
    usage = metrics.usage
    assert usage is not None
    for _ in range(4):
        usage.record_prediction("1", "claim", "evidence", source="app")
    usage.record_feedback("1", "SUPPORT", "SUPPORT", source="app")
    usage.record_feedback("1", "SUPPORT", "REFUTE", source="api")
    (row,) = per_version(metrics.registry)
    assert (row.predictions, row.feedback, row.feedback_rate, row.agreement) == (4, 2, 0.5, 0.5)
    assert "feedback rate **50.0 %**" in summary_markdown(metrics.registry)


def test_each_session_gets_its_own_client_id() -> None:
    first, second = new_client_id(), new_client_id()
    assert first != second and first.startswith("app-") and len(first) <= 64
