"""Inference runtimes on the tiny model: ONNX export and parity, each runtime against
PyTorch fp32, a failed export served by PyTorch, auto's choice and its cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.tasks.classifier.artifact import PARITY_FILE
from citeops.tasks.inference import runtimes
from citeops.tasks.inference.engines import ONNX_FILE
from citeops.tasks.inference.loading import load_verifier
from citeops.tasks.inference.runtimes import CHOICES_FILE, encoded_proba
from citeops.tasks.inference.smoke import parity_pairs
from citeops.tasks.registry import export
from citeops.tasks.registry.export import export_with_parity
from tests.integration.serve_support import save_tiny_model


def fp32_settings(**serve: Any) -> Settings:
    """Every runtime at fp32, so that all must match PyTorch fp32 closely."""
    return load_settings(
        serve={"precision": "fp32", "openvino_precision": "fp32", **serve},
        registry={"parity_pairs": 8},
    )


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    folder = save_tiny_model(tmp_path / "tiny")
    report = export_with_parity(folder, fp32_settings())
    assert report.exportable, report.reason
    return folder


def wrong_model_exporter(tmp_path: Path) -> Any:
    """Exports another random model in place of the one asked for: parity must fail."""
    other = save_tiny_model(tmp_path / "other", seed=1)

    def export_wrong(model: Any, tokenizer: Any, path: Path) -> tuple[str, ...]:
        from transformers import AutoModelForSequenceClassification

        wrong = AutoModelForSequenceClassification.from_pretrained(other)
        return export.export_onnx(wrong, tokenizer, path)

    return export_wrong


def test_export_of_the_tiny_model_matches_pytorch_fp32(exported: Path) -> None:
    meta = json.loads((exported / "citeops.json").read_text())["onnx"]
    assert meta["exportable"] is True and meta["file"] == ONNX_FILE
    assert meta["agreement"] == 1.0
    assert meta["max_prob_diff"] < 1e-5
    assert meta["opset"] == 17
    assert set(meta["inputs"]) == {"input_ids", "attention_mask", "token_type_ids"}
    assert (exported / ONNX_FILE).is_file()
    sample = json.loads((exported / PARITY_FILE).read_text())
    assert len(sample) == meta["pairs"] == 8
    assert [tuple(p) for p in sample] == parity_pairs(fp32_settings())  # fixed sample


def test_the_export_has_dynamic_batch_and_sequence_axes(exported: Path) -> None:
    import onnx

    graph = onnx.load(str(exported / ONNX_FILE)).graph
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], tensor.name


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_each_runtime_gives_pytorch_fp32_probabilities(exported: Path, runtime: str) -> None:
    settings = fp32_settings()
    pairs = parity_pairs(settings)
    reference = encoded_proba(load_verifier(str(exported), settings), pairs)
    verifier = load_verifier(str(exported), settings, runtime=runtime)
    assert verifier.runtime == runtime
    assert verifier.runtime_precision == "fp32"
    served = encoded_proba(verifier, pairs)
    assert np.abs(served - reference).max() < 1e-4
    assert (served.argmax(axis=1) == reference.argmax(axis=1)).all()
    claims, evidences = zip(*pairs, strict=True)
    batched = verifier.predict_proba(list(claims), list(evidences), batch_size=3)
    assert np.abs(batched - reference).max() < 1e-4


def test_openvino_reports_the_precision_its_plugin_runs(exported: Path) -> None:
    """bf16 is requested; the engine says bf16 exactly where the CPU plugin took the hint
    (it once said fp32 everywhere: the plugin's answer is spelt 'bfloat16')."""
    import openvino as ov

    from citeops.tasks.inference.engines import openvino_engine

    engine = openvino_engine(exported / ONNX_FILE, "bf16", threads=1)
    plugin = (
        ov.Core()
        .compile_model(str(exported / ONNX_FILE), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
        .get_property("INFERENCE_PRECISION_HINT")
    )
    assert engine.precision == ("bf16" if plugin == ov.Type.bf16 else "fp32")
    assert openvino_engine(exported / ONNX_FILE, "fp32", threads=1).precision == "fp32"
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "avx512_bf16" in cpu or "amx_bf16" in cpu:  # this CPU runs bf16: the engine says so
        assert engine.precision == "bf16"


def test_onnxruntime_int8_is_a_quantised_copy_kept_in_the_state_folder(exported: Path) -> None:
    settings = fp32_settings(onnxruntime_precision="int8")
    verifier = load_verifier(str(exported), settings, runtime="onnxruntime")
    assert (verifier.runtime, verifier.runtime_precision) == ("onnxruntime", "int8")
    assert list((settings.state_dir / "onnx-int8").glob("*-int8.onnx"))
    probs = encoded_proba(verifier, parity_pairs(settings))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_a_failed_parity_marks_the_model_not_exportable_and_torch_serves_it(
    tmp_path: Path,
) -> None:
    folder = save_tiny_model(tmp_path / "tiny")
    settings = fp32_settings()
    report = export_with_parity(folder, settings, exporter=wrong_model_exporter(tmp_path))
    assert not report.exportable
    assert report.max_prob_diff is not None and report.max_prob_diff > 1e-3
    assert "max probability difference" in (report.reason or "")
    assert not (folder / ONNX_FILE).exists()
    meta = json.loads((folder / "citeops.json").read_text())["onnx"]
    assert meta["exportable"] is False and meta["file"] is None
    for runtime in ("onnxruntime", "openvino", "auto"):
        verifier = load_verifier(str(folder), settings, runtime=runtime)
        assert verifier.runtime == "torch", runtime


def test_a_model_that_cannot_be_traced_is_marked_not_exportable(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "tiny", vocab_size=50)  # raises on real input
    report = export_with_parity(folder, fp32_settings())
    assert not report.exportable and report.reason
    assert not (folder / ONNX_FILE).exists()


def test_auto_picks_an_agreeing_runtime_and_caches_the_choice(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fp32_settings(runtime="auto")
    verifier = load_verifier(str(exported), settings, runtime="auto")
    assert verifier.runtime in runtimes.RUNTIMES
    choices = json.loads((settings.state_dir / CHOICES_FILE).read_text())
    (decision,) = choices.values()
    assert decision["runtime"] == verifier.runtime
    assert decision["precision"] == verifier.runtime_precision
    assert {c["runtime"] for c in decision["calibrations"]} == set(runtimes.RUNTIMES)
    assert all(c["agreement"] == 1.0 for c in decision["calibrations"])
    chosen = max(decision["calibrations"], key=lambda c: c["pairs_per_s"])
    assert chosen["runtime"] == decision["runtime"]

    def no_calibration(*args: Any) -> None:
        raise AssertionError("a cached decision must not calibrate again")

    monkeypatch.setattr(runtimes, "calibrate", no_calibration)
    again = load_verifier(str(exported), settings, runtime="auto")
    assert again.runtime == verifier.runtime


def test_auto_keeps_only_runtimes_that_agree_with_fp32() -> None:
    fast_wrong = runtimes.Calibration("openvino", "bf16", 100.0, 0.95, 0.2)
    slow_right = runtimes.Calibration("onnxruntime", "fp32", 20.0, 1.0, 0.0)
    broken = runtimes.Calibration("torch", "bf16", 500.0, 1.0, 0.0, error="no")
    assert runtimes.choose([fast_wrong, slow_right, broken], 0.99) == slow_right
    assert runtimes.choose([fast_wrong], 0.99) is None


def test_serving_batches_follow_the_token_budget() -> None:
    batches = runtimes.serving_batches([300, 10, 20, 200, 30], max_batch=2, max_tokens=64)
    assert batches == [[1, 2], [4], [3], [0]]


def test_evaluate_on_openvino_gives_the_labels_of_pytorch_fp32(exported: Path) -> None:
    from citeops.tasks.validate.evaluate import evaluate_model

    settings = fp32_settings()
    served = evaluate_model(settings, str(exported), runtime="openvino", log_to_mlflow=False)
    plain = evaluate_model(settings, str(exported), log_to_mlflow=False)
    assert served.runtime == "openvino fp32" and plain.runtime == "torch fp32"
    assert served.to_dict()["runtime"] == "openvino fp32"
    for name, dataset in plain.datasets.items():  # label metrics (AUROC ranks near-ties)
        labels = {k: v for k, v in dataset.metrics.items() if k.startswith(("f1", "accuracy"))}
        assert labels
        got = {k: served.datasets[name].metrics[k] for k in labels}
        assert got == pytest.approx(labels, abs=1e-9)
