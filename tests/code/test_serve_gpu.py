"""GPU gauges on /metrics: values from NVML, and nothing (but a 0) where there is no GPU."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from citeops.serving.gpu import GpuCollector, Nvml, read_gpus
from citeops.serving.metrics import build_metrics

GIB = 2**30


class NotSupported(Exception):
    """What NVML raises for a value a device does not report."""


class FakeNvml:
    """The NVML calls the collector makes, for two devices; the second reports no
    utilisation (as some do)."""

    devices = (
        {"name": "NVIDIA H200", "gpu": 37, "used": 3 * GIB, "total": 141 * GIB},
        {"name": b"NVIDIA L4", "gpu": None, "used": GIB, "total": 24 * GIB},
    )

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:
        return handle["name"]

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:
        if handle["gpu"] is None:
            raise NotSupported("utilisation not supported")
        return SimpleNamespace(gpu=handle["gpu"], memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:
        return SimpleNamespace(used=handle["used"], total=handle["total"], free=0)


def test_nvml_readings_are_exported_per_device() -> None:
    readings = read_gpus(FakeNvml())
    assert [r.name for r in readings] == ["NVIDIA H200", "NVIDIA L4"]
    assert readings[1].utilization_percent is None and readings[1].memory_used_bytes == GIB

    value = build_metrics(GpuCollector(Nvml(load=FakeNvml))).registry.get_sample_value
    h200 = {"gpu": "0", "name": "NVIDIA H200"}
    l4 = {"gpu": "1", "name": "NVIDIA L4"}
    assert value("citeops_gpu_available") == 1.0
    assert value("citeops_gpu_utilization_percent", h200) == 37.0
    assert value("citeops_gpu_memory_used_bytes", h200) == 3 * GIB
    assert value("citeops_gpu_memory_total_bytes", h200) == 141 * GIB
    assert value("citeops_gpu_memory_total_bytes", l4) == 24 * GIB
    assert value("citeops_gpu_utilization_percent", l4) is None  # not reported, not 0


def test_nvml_that_fails_to_load_is_tried_once_and_leaves_only_a_zero() -> None:
    calls = []

    def no_driver() -> Any:
        calls.append(1)
        raise OSError("NVML Shared Library Not Found")

    metrics = build_metrics(GpuCollector(Nvml(load=no_driver)))
    for _ in range(3):
        text = metrics.render()[0].decode()
        assert "citeops_gpu_available 0.0" in text
        assert "citeops_gpu_memory" not in text and "citeops_gpu_utilization" not in text
    assert calls == [1]


def test_metrics_on_this_cpu_machine_answer_200_without_gpu_samples(tmp_path: Path) -> None:
    import torch

    from citeops.configs.settings import load_settings
    from citeops.serving.app import create_app
    from tests.integration.serve_support import running_server, save_tiny_model

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: this checks a machine without one")
    folder = save_tiny_model(tmp_path / "tiny")
    settings = load_settings(profile="test", home=tmp_path / "home", serve={"precision": "fp32"})
    with running_server(create_app(settings, str(folder))) as base:
        response = httpx.get(base + "/metrics")
        version = httpx.get(base + "/version").json()
    assert response.status_code == 200
    samples = [line for line in response.text.splitlines() if not line.startswith("#")]
    assert [line for line in samples if line.startswith("citeops_gpu_")] == [
        "citeops_gpu_available 0.0"
    ]
    assert 'device="cpu"' in response.text and 'basis="configured"' in response.text
    assert version["live"]["device"] == "cpu" and version["live"]["runtime"] == "torch"
    assert version["live"]["runtime_reason"] == "serve.runtime is torch"
