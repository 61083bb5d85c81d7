"""Registered versions carry a parity-checked ONNX export; the endpoint serves them on the
configured runtime, says which in /version and /metrics, and swaps between a version
served by PyTorch (no export) and one on ONNX Runtime without losing a request."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.serving.app import create_app
from citeops.tasks.registry import export
from citeops.tasks.registry.register import client, register_folder
from tests.integration.serve_support import running_server, save_tiny_model
from tests.integration.test_serve import AUTH, PAIR, TOKEN

pytestmark = pytest.mark.integration


def register_tiny(settings: Settings, seed: int, broken_export: bool = False) -> str:
    """Register a tiny model; with ``broken_export`` its ONNX export raises."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_model(Path(tmp) / "m", seed=seed)
        if not broken_export:
            return register_folder(settings, folder, run_name=f"tiny-{seed}").version
        with pytest.MonkeyPatch.context() as patch:

            def fail(*args: Any) -> tuple[str, ...]:
                raise export.ExportError("ONNX export failed: simulated")

            patch.setattr(export, "export_onnx", fail)
            return register_folder(settings, folder, run_name=f"tiny-{seed}").version


def version_tag(settings: Settings, version: str) -> str | None:
    found = client(settings).get_model_version(settings.mlflow.registered_model, version)
    return found.tags.get(export.EXPORTABLE_TAG)


def test_registration_exports_and_logs_parity_and_a_failed_export_still_registers() -> None:
    settings = load_settings()
    good = register_tiny(settings, seed=0)
    bad = register_tiny(settings, seed=1, broken_export=True)
    assert version_tag(settings, good) == "true"
    assert version_tag(settings, bad) == "false"
    mlflow_client = client(settings)
    name = settings.mlflow.registered_model
    run = mlflow_client.get_run(mlflow_client.get_model_version(name, good).run_id)
    assert run.data.metrics["onnx_parity_agreement"] == 1.0
    assert run.data.metrics["onnx_parity_max_prob_diff"] < 1e-5
    from citeops.tasks.inference.loading import load_verifier

    served = load_verifier(f"models:/{name}/{good}", settings, runtime="onnxruntime")
    assert served.runtime == "onnxruntime"  # loaded while the download still existed
    fallback = load_verifier(f"models:/{name}/{bad}", settings, runtime="onnxruntime")
    assert fallback.runtime == "torch"
    assert fallback.meta["onnx"]["exportable"] is False
    assert "simulated" in fallback.meta["onnx"]["reason"]


def test_a_swap_between_runtimes_loses_no_request_and_version_says_which(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        admin_token=TOKEN, serve={"runtime": "onnxruntime", "precision": "fp32"}
    )
    torch_only = register_tiny(settings, seed=1, broken_export=True)
    exported = register_tiny(settings, seed=0)
    name = settings.mlflow.registered_model
    app = create_app(settings, f"models:/{name}/{torch_only}")
    with running_server(app) as base:
        live = httpx.get(base + "/version").json()["live"]
        assert (live["runtime"], live["precision"]) == ("torch", "fp32")

        def predict(_: int) -> int:
            return httpx.post(base + "/predict", json=PAIR, timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            load = pool.map(predict, range(40))
            swap = httpx.post(
                base + "/admin/deploy",
                json={"model_uri": f"models:/{name}/{exported}"},
                headers=AUTH,
                timeout=120,
            )
            codes = list(load)
        assert swap.status_code == 200, swap.text
        assert codes == [200] * 40
        status = httpx.get(base + "/version").json()
        assert status["live"]["runtime"] == "onnxruntime"
        assert status["live"]["model_version"] == exported
        assert status["idle"]["runtime"] == "torch"
        metrics = httpx.get(base + "/metrics").text
        live_labels = 'basis="configured",device="cpu",precision="fp32",runtime="onnxruntime"'
        assert "citeops_slot_runtime_info{" + live_labels in metrics
        assert status["idle"]["runtime_basis"] == "no_export"  # the version PyTorch serves
        assert 'runtime="torch",slot=' in metrics
