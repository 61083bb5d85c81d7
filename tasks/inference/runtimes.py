"""Inference runtimes behind one small interface: PyTorch, ONNX Runtime and OpenVINO.

A :class:`~citeops.tasks.inference.predictor.ClaimVerifier` tokenises pairs and hands the
padded tensors to an :class:`Engine`, which returns class probabilities. The PyTorch
engine runs the model itself; the other two run the ONNX export that registration writes
beside the weights (:func:`export_with_parity`), and only when that export passed its
parity check against PyTorch fp32 (``citeops.json`` -> ``onnx.exportable``).

:func:`apply_runtime` gives a loaded verifier its runtime: ``torch``, ``onnxruntime``,
``openvino``, or ``auto``, which times every runtime on the model's parity sample on this
machine and keeps the fastest whose label agreement with PyTorch fp32 is at least
``serve.auto_min_agreement``. The decision is cached per model export and CPU in
``<state>/runtime-choices.json``, so a restart or a second slot does not calibrate again.
Where PyTorch runs on a CUDA GPU (``serve.device``, :func:`resolve_device`), ``auto``
picks PyTorch without calibrating: ONNX Runtime and OpenVINO run on the CPU here.

onnxruntime and openvino are imported inside functions: importing this module is free.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.classifier.artifact import PARITY_FILE
from citeops.tasks.inference.engines import (
    CLASSIFIER_GRAPH,
    ONNX_FILE,
    ONNX_META_KEY,
    RUNTIMES,
    DeviceUnavailable,
    Engine,
    RuntimeName,
    RuntimeUnavailable,
    int8_copy,
    onnxruntime_engine,
    openvino_engine,
    resolve_device,
)
from citeops.tasks.inference.smoke import parity_pairs

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.inference.predictor import ClaimVerifier

log = logging.getLogger(__name__)

CHOICES_FILE = "runtime-choices.json"


def encoded_proba(
    verifier: ClaimVerifier, pairs: Sequence[tuple[str, str]], batches: Sequence[Sequence[int]] = ()
) -> np.ndarray:
    """Probabilities of ``pairs`` through the serving path (``encode_pair`` then
    ``predict_encoded``), batched as ``batches`` (positions; default batches of 8)."""
    encoded = [verifier.encode_pair(c, e) for c, e in pairs]
    plan = batches or [range(i, min(i + 8, len(pairs))) for i in range(0, len(pairs), 8)]
    out = np.zeros((len(pairs), len(verifier.labels)), dtype=np.float32)
    for positions in plan:
        idx = list(positions)
        out[idx] = verifier.predict_encoded([encoded[i] for i in idx])
    return out


def export_path(verifier: ClaimVerifier) -> Path | None:
    """The verifier's parity-checked ONNX file, or None (no export, or not exportable)."""
    entry = verifier.meta.get(ONNX_META_KEY) or {}
    if not entry.get("exportable") or verifier.folder is None:
        return None
    path = Path(verifier.folder) / ONNX_FILE
    return path if path.is_file() else None


def with_runtime(
    verifier: ClaimVerifier, runtime: RuntimeName, precision: str, settings: Settings
) -> ClaimVerifier:
    """A verifier sharing ``verifier``'s tokenizer and meta that runs on ``runtime`` at
    ``precision``. ``verifier`` must be the fp32 PyTorch one (it is not modified).
    PyTorch runs on the device :func:`resolve_device` gives for ``serve.device``.

    Raises:
        RuntimeUnavailable: the runtime is not installed, or the model has no
            parity-checked ONNX export.
        DeviceUnavailable: ``serve.device`` is cuda and no CUDA GPU is visible.
    """
    import copy

    if runtime == "torch":
        device = resolve_device(settings.serve.device, precision)
        if precision == verifier.precision and device == verifier.device:
            return verifier
        return dataclasses.replace(
            verifier,
            model=copy.deepcopy(verifier.model),
            precision=precision,
            engine=None,
            device=device,
        )
    path = export_path(verifier)
    if path is None:
        raise RuntimeUnavailable(
            f"{verifier.model_uri or 'this model'} has no parity-checked ONNX export "
            f"({(verifier.meta.get(ONNX_META_KEY) or {}).get('reason') or 'none written'})"
        )
    threads = settings.serve.threads
    graph = export_graph(verifier)
    if runtime == "onnxruntime":
        if precision == "int8":
            path = int8_copy(path, settings.state_dir / "onnx-int8")
        engine: Engine = onnxruntime_engine(path, precision, threads, graph)
    else:
        engine = openvino_engine(path, precision, threads, graph)
    return dataclasses.replace(verifier, engine=engine)


def export_graph(verifier: ClaimVerifier) -> str:
    """What the verifier's export computes (``citeops.json`` -> ``onnx.graph``; an export
    written before the siamese side encoder is the whole classifier)."""
    entry = verifier.meta.get(ONNX_META_KEY) or {}
    return str(entry.get("graph") or CLASSIFIER_GRAPH)


def runtime_precision(runtime: RuntimeName, settings: Settings) -> str:
    """The configured precision of ``runtime`` (``serve.precision`` for PyTorch)."""
    serve = settings.serve
    return {
        "torch": serve.precision,
        "onnxruntime": serve.onnxruntime_precision,
        "openvino": serve.openvino_precision,
    }[runtime]


# ---- auto: calibrate, choose, cache -------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """One runtime's figures on the parity sample: speed and agreement with PyTorch fp32."""

    runtime: RuntimeName
    precision: str
    pairs_per_s: float
    agreement: float
    max_prob_diff: float
    error: str | None = None


# why a runtime serves, as a short code (a /metrics label): serve.runtime named it; auto
# calibrated; auto on a CUDA GPU; no parity-checked export (PyTorch serves); auto found no
# runtime at the agreement floor
BASES = ("configured", "calibrated", "cuda", "no_export", "no_agreement")


@dataclass(frozen=True)
class RuntimeDecision:
    """What ``auto`` chose, on which machine, for which model export, and from what;
    ``basis`` is one of :data:`BASES`."""

    runtime: RuntimeName
    precision: str
    key: str
    reason: str
    calibrations: tuple[Calibration, ...] = ()
    decided_at: str = ""
    basis: str = "calibrated"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RuntimeDecision:
        calibrations = tuple(Calibration(**c) for c in raw.get("calibrations", ()))
        return cls(**{**raw, "calibrations": calibrations})


def cpu_key() -> str:
    """Names this machine's CPU (model, cores) and the inference threads."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}|{os.cpu_count()}cpu|{torch.get_num_threads()}threads"


def decision_key(verifier: ClaimVerifier, settings: Settings) -> str:
    """Cache key: the export's digest (names the model version), the CPU, the precisions
    asked for, each runtime's batching budget and the agreement floor."""
    sha = (verifier.meta.get(ONNX_META_KEY) or {}).get("sha256") or "no-export"
    precisions = ",".join(f"{r}={runtime_precision(r, settings)}" for r in RUNTIMES)
    budgets = ",".join(f"{r}={_budget(settings, r)}" for r in RUNTIMES)
    floor = settings.serve.auto_min_agreement
    return f"{sha}|{cpu_key()}|{precisions}|batch={budgets}|min={floor}"


def _budget(settings: Settings, runtime: str) -> tuple[int, int]:
    """``(max_batch_size, max_batch_tokens)`` serving batches ``runtime``'s pairs under."""
    serve = settings.serve
    return (
        serve.batching_value(runtime, "max_batch_size"),
        serve.batching_value(runtime, "max_batch_tokens"),
    )


def read_choices(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def write_choice(path: Path, decision: RuntimeDecision) -> None:
    """Add ``decision`` to the cache file (atomic rename; concurrent writers may drop one
    another's entry, which only costs a later calibration)."""
    choices = read_choices(path)
    choices[decision.key] = decision.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(choices, indent=2, sort_keys=True))
    os.replace(tmp, path)


def calibration_sample(verifier: ClaimVerifier, settings: Settings) -> list[tuple[str, str]]:
    """The model's parity sample (written at export), else the configured one."""
    path = Path(verifier.folder) / PARITY_FILE if verifier.folder else None
    if path is not None and path.is_file():
        try:
            return [(str(c), str(e)) for c, e in json.loads(path.read_text())]
        except (ValueError, TypeError):
            log.warning("%s unreadable; calibrating on the configured sample", path)
    return parity_pairs(settings)


def serving_batches(lengths: Sequence[int], max_batch: int, max_tokens: int) -> list[list[int]]:
    """Positions grouped as the serving micro-batcher would under a full queue: sorted by
    length, at most ``max_batch`` pairs and ``max_tokens`` padded tokens a batch."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    for pos in order:
        current = batches[-1] if batches else None
        if current and len(current) < max_batch and lengths[pos] * (len(current) + 1) <= max_tokens:
            current.append(pos)
        else:
            batches.append([pos])
    return batches


def calibrate(
    reference: ClaimVerifier,
    candidates: Sequence[ClaimVerifier],
    pairs: Sequence[tuple[str, str]],
    settings: Settings,
) -> list[Calibration]:
    """Time each candidate on ``pairs`` batched as serving batches them for its runtime
    (its ``serve.batching`` budget), batch by batch in turn (so that all see the same
    machine load), after one warm-up pass; agreement and probability difference against
    ``reference`` (PyTorch fp32)."""
    encoded = [reference.encode_pair(c, e) for c, e in pairs]
    lengths = [len(ids) for ids in encoded]
    serve = settings.serve
    expected = encoded_proba(
        reference, pairs, serving_batches(lengths, serve.max_batch_size, serve.max_batch_tokens)
    )
    plans = [serving_batches(lengths, *_budget(settings, cand.runtime)) for cand in candidates]
    seconds = [0.0] * len(candidates)
    outputs = [np.zeros_like(expected) for _ in candidates]
    for cand, plan in zip(candidates, plans, strict=True):  # warm-up (first shapes, caches)
        cand.predict_encoded([encoded[i] for i in plan[0]])
    for step in range(max((len(plan) for plan in plans), default=0)):
        for i, cand in enumerate(candidates):
            if step >= len(plans[i]):
                continue
            positions = plans[i][step]
            start = time.perf_counter()
            outputs[i][positions] = cand.predict_encoded([encoded[p] for p in positions])
            seconds[i] += time.perf_counter() - start
    results = []
    for cand, spent, out in zip(candidates, seconds, outputs, strict=True):
        results.append(
            Calibration(
                runtime=cand.runtime,
                precision=cand.runtime_precision,
                pairs_per_s=len(pairs) / max(spent, 1e-9),
                agreement=float(np.mean(out.argmax(axis=1) == expected.argmax(axis=1))),
                max_prob_diff=float(np.abs(out - expected).max()),
            )
        )
    return results


def choose(calibrations: Sequence[Calibration], min_agreement: float) -> Calibration | None:
    """The fastest calibration with agreement >= ``min_agreement`` and no error."""
    fit = [c for c in calibrations if c.error is None and c.agreement >= min_agreement]
    return max(fit, key=lambda c: c.pairs_per_s) if fit else None


def decide_auto(
    verifier: ClaimVerifier, settings: Settings
) -> tuple[RuntimeDecision, ClaimVerifier]:
    """Calibrate every runtime that can serve ``verifier`` (fp32 PyTorch) here, choose, and
    cache the decision; returns it with the chosen verifier. A cached decision for the same
    export, CPU and precisions is reused without calibrating."""
    key = decision_key(verifier, settings)
    torch_precision = runtime_precision("torch", settings)
    if resolve_device(settings.serve.device, torch_precision) == "cuda":
        reason = _cuda_reason(torch_precision)
        decision = RuntimeDecision("torch", torch_precision, key, reason, (), _now(), "cuda")
        return decision, with_runtime(verifier, "torch", torch_precision, settings)
    path = settings.state_dir / CHOICES_FILE
    cached = read_choices(path).get(key)
    if cached:
        decision = RuntimeDecision.from_dict(cached)
        try:
            return decision, with_runtime(verifier, decision.runtime, decision.precision, settings)
        except (RuntimeUnavailable, OSError, RuntimeError) as error:
            log.warning("cached runtime %s unusable (%s); calibrating", decision.runtime, error)
    if export_path(verifier) is None:
        reason = "no parity-checked ONNX export: PyTorch serves this version"
        decision = RuntimeDecision("torch", torch_precision, key, reason, (), _now(), "no_export")
        return decision, with_runtime(verifier, "torch", torch_precision, settings)
    built: list[ClaimVerifier] = []
    failed: list[Calibration] = []
    for runtime in RUNTIMES:
        precision = runtime_precision(runtime, settings)
        try:
            built.append(with_runtime(verifier, runtime, precision, settings))
        except Exception as error:  # noqa: BLE001 - a runtime that cannot load is not chosen
            log.warning("runtime %s (%s) unavailable: %s", runtime, precision, error)
            failed.append(Calibration(runtime, precision, 0.0, 0.0, 1.0, str(error)))
    pairs = calibration_sample(verifier, settings)[: settings.serve.calibration_pairs]
    results = calibrate(verifier, built, pairs, settings) + failed
    best = choose(results, settings.serve.auto_min_agreement)
    basis = "calibrated" if best is not None else "no_agreement"
    if best is None:
        chosen, reason = built[0] if built else verifier, "no runtime reached the agreement floor"
        best_runtime, best_precision = chosen.runtime, chosen.runtime_precision
    else:
        chosen = next(v for v in built if v.runtime == best.runtime)
        best_runtime, best_precision = best.runtime, best.precision
        reason = (
            f"fastest with agreement >= {settings.serve.auto_min_agreement} on {len(pairs)} "
            f"pairs: {best.pairs_per_s:.1f} pairs/s, agreement {best.agreement:.4f}"
        )
    decision = RuntimeDecision(
        best_runtime, best_precision, key, reason, tuple(results), _now(), basis
    )
    write_choice(path, decision)
    log.info("runtime auto: %s %s (%s)", decision.runtime, decision.precision, reason)
    return decision, chosen


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cuda_reason(precision: str) -> str:
    import torch

    gpu = torch.cuda.get_device_name(0)
    return (
        f"CUDA GPU visible ({gpu}): PyTorch {precision} on cuda; ONNX Runtime and OpenVINO "
        "run on the CPU here, so auto does not calibrate"
    )


def _explained(verifier: ClaimVerifier, basis: str, reason: str) -> ClaimVerifier:
    verifier.runtime_basis, verifier.runtime_reason = basis, reason
    return verifier


def apply_runtime(verifier: ClaimVerifier, runtime: str, settings: Settings) -> ClaimVerifier:
    """Give a freshly loaded fp32 PyTorch ``verifier`` the requested runtime.

    ``auto`` calibrates (or reuses the cached decision, see :func:`decide_auto`). An
    explicit ``onnxruntime`` or ``openvino`` on a model without a parity-checked export
    falls back to PyTorch with a warning: such a version is served by PyTorch. The
    returned verifier says why in ``runtime_basis`` (one of :data:`BASES`) and
    ``runtime_reason``.

    Raises:
        RuntimeUnavailable: an unknown runtime, or one that cannot serve this export.
        DeviceUnavailable: ``serve.device`` is cuda and no CUDA GPU is visible.
    """
    if runtime == "auto":
        decision, chosen = decide_auto(verifier, settings)
        return _explained(chosen, decision.basis, decision.reason)
    if runtime not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}; use one of {RUNTIMES} or auto")
    precision = runtime_precision(runtime, settings)  # type: ignore[arg-type]
    try:
        served = with_runtime(verifier, runtime, precision, settings)  # type: ignore[arg-type]
        return _explained(served, "configured", f"serve.runtime is {runtime}")
    except DeviceUnavailable:
        raise
    except RuntimeUnavailable as error:
        if export_path(verifier) is not None:
            raise
        log.warning("%s; serving it with PyTorch", error)
        torch_precision = runtime_precision("torch", settings)
        served = with_runtime(verifier, "torch", torch_precision, settings)
        reason = f"serve.runtime is {runtime}, but this version has no parity-checked ONNX export"
        return _explained(served, "no_export", reason)
