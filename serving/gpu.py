"""GPU gauges for ``/metrics`` from NVML (the ``nvidia-ml-py`` binding, module ``pynvml``).

:class:`GpuCollector` reads every device at scrape time. NVML is imported and initialised
on the first scrape, never at import or when the app is built; where it cannot be used
(binding missing, no NVIDIA driver, no GPU) the collector exports ``citeops_gpu_available
0`` and no other GPU sample, and never raises. NVML lists every GPU of the machine, not
only those ``CUDA_VISIBLE_DEVICES`` leaves to this process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class GpuReading:
    """One device at one moment; a value the device would not give is None."""

    index: int
    name: str
    utilization_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None


def _or_none(read: Callable[[Any], T], handle: Any) -> T | None:
    try:
        return read(handle)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and kin: no value
        return None


def read_gpus(nvml: Any) -> list[GpuReading]:
    """Read every device of ``nvml``: the initialised ``pynvml`` module, or any object with
    its ``nvmlDeviceGetCount``, ``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetName``,
    ``nvmlDeviceGetUtilizationRates`` (``.gpu``, percent) and ``nvmlDeviceGetMemoryInfo``
    (``.used``, ``.total``, bytes).

    Raises:
        Exception: whatever NVML raises when the devices cannot be listed.
    """
    readings = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _or_none(nvml.nvmlDeviceGetName, handle)
        rates = _or_none(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = _or_none(nvml.nvmlDeviceGetMemoryInfo, handle)
        readings.append(
            GpuReading(
                index=index,
                name=name.decode() if isinstance(name, bytes) else str(name or ""),
                utilization_percent=None if rates is None else float(rates.gpu),
                memory_used_bytes=None if memory is None else int(memory.used),
                memory_total_bytes=None if memory is None else int(memory.total),
            )
        )
    return readings


def load_pynvml() -> Any:
    """The ``pynvml`` module, initialised.

    Raises:
        ImportError: nvidia-ml-py is not installed.
        pynvml.NVMLError: no NVIDIA driver or no GPU.
    """
    import pynvml

    pynvml.nvmlInit()
    return pynvml


class Nvml:
    """NVML, loaded by ``load`` on the first :meth:`get` only; None from then on where it
    failed (the reason is logged once)."""

    def __init__(self, load: Callable[[], Any] = load_pynvml) -> None:
        self._load = load
        self._nvml: Any = None
        self._tried = False
        self._lock = threading.Lock()

    def get(self) -> Any | None:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._nvml = self._load()
                except Exception as error:  # noqa: BLE001 - no NVML: no GPU gauges
                    log.info("no GPU metrics (NVML unavailable: %s)", error)
        return self._nvml


class GpuCollector:
    """Prometheus collector: ``citeops_gpu_available``, and per device
    ``citeops_gpu_utilization_percent``, ``citeops_gpu_memory_used_bytes`` and
    ``citeops_gpu_memory_total_bytes`` labelled by ``gpu`` (NVML index) and ``name``."""

    def __init__(self, nvml: Nvml) -> None:
        self.nvml = nvml

    def describe(self) -> list[Any]:
        return []  # nothing is read when the collector is registered

    def readings(self) -> list[GpuReading]:
        """The devices now; empty without NVML or when reading fails."""
        module = self.nvml.get()
        if module is None:
            return []
        try:
            return read_gpus(module)
        except Exception as error:  # noqa: BLE001 - a scrape never fails on the GPU
            log.warning("GPU metrics not read: %s", error)
            return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        readings = self.readings()
        available = "1 if NVML reports at least one GPU, else 0 (and no other GPU sample)."
        yield GaugeMetricFamily("citeops_gpu_available", available, float(bool(readings)))
        if not readings:
            return
        families = {
            "utilization_percent": "GPU utilisation over NVML's last sample period, percent.",
            "memory_used_bytes": "GPU memory in use (all processes), bytes.",
            "memory_total_bytes": "GPU memory in total, bytes.",
        }
        for field, text in families.items():
            family = GaugeMetricFamily(f"citeops_gpu_{field}", text, labels=["gpu", "name"])
            for reading in readings:
                value = getattr(reading, field)
                if value is not None:
                    family.add_metric([str(reading.index), reading.name], float(value))
            yield family
