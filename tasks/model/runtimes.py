"""Inference runtimes behind one small interface: PyTorch, ONNX Runtime and OpenVINO.

A :class:`~citeops.tasks.model.predictor.ClaimVerifier` tokenises pairs and hands the
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

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.model.predictor import ClaimVerifier

log = logging.getLogger(__name__)

RuntimeName = Literal["torch", "onnxruntime", "openvino"]
RUNTIMES: tuple[RuntimeName, ...] = ("torch", "onnxruntime", "openvino")
ONNX_FILE = "model.onnx"
PARITY_FILE = "parity-sample.json"  # the (claim, evidence) pairs export parity used
ONNX_META_KEY = "onnx"  # the export's entry in citeops.json
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
CHOICES_FILE = "runtime-choices.json"
EXPORTABLE_TAG = "citeops.onnx_exportable"  # run and model-version tag: "true" / "false"

# Known (claim, evidence) pairs: serving's smoke checks, and the parity sample when the
# benchmark data cannot be read (parity still needs some real text)
KNOWN_PAIRS: tuple[tuple[str, str], ...] = (
    (
        "Vitamin D supplementation reduces the risk of fractures in older adults.",
        "In a randomised trial of 2,000 adults over 65, daily vitamin D did not change "
        "fracture rates compared with placebo over five years.",
    ),
    (
        "Aspirin lowers the risk of colorectal cancer.",
        "Long-term daily aspirin use was associated with a lower incidence of colorectal "
        "cancer in pooled cohort data.",
    ),
    (
        "The protein is expressed in neurons.",
        "We describe the crystal structure of a bacterial membrane transporter.",
    ),
    ("Smoking causes lung cancer.", "Smoking is the leading cause of lung cancer."),
)


class RuntimeUnavailable(CiteopsError):
    """A runtime cannot serve this model here (not installed, or no parity-checked export)."""


class ExportError(CiteopsError):
    """The classifier could not be exported to ONNX."""


class DeviceUnavailable(RuntimeUnavailable):
    """``serve.device`` names a device this machine lacks, or one its precision cannot use."""


def resolve_device(requested: str, precision: str, cuda: bool | None = None) -> str:
    """Where PyTorch runs: ``cpu`` or ``cuda``, for ``serve.device`` (auto | cpu | cuda)
    and PyTorch's ``precision``. ``auto`` is cuda when a CUDA GPU is visible and the
    precision is not int8 (dynamic quantisation runs on the CPU only). ``cuda`` None: ask
    torch.

    Raises:
        DeviceUnavailable: cuda was asked for and no CUDA GPU is visible, or with int8.
    """
    if requested == "cpu":
        return "cpu"
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise DeviceUnavailable(
            "serve.device is cuda (CITEOPS_SERVE__DEVICE) but torch sees no CUDA GPU on this "
            "machine; set it to auto or cpu"
        )
    if requested == "cuda" and precision == "int8":
        raise DeviceUnavailable(
            "serve.precision int8 runs on the CPU only; with serve.device cuda use bf16 or fp32"
        )
    return "cuda" if cuda and precision != "int8" else "cpu"


class Engine(Protocol):
    """Runs the classifier's forward pass on padded token tensors.

    ``proba`` takes ``input_ids``, ``attention_mask`` and (when the tokenizer makes them)
    ``token_type_ids`` as int64 tensors or arrays of shape (batch, sequence) and returns
    softmax probabilities, float32, shape (batch, labels), in input order.
    """

    name: RuntimeName
    precision: str

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (stable for large logits)."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _numpy_inputs(inputs: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        value = inputs.get(name)
        if value is None:  # a graph input the tokenizer does not make: all zeros
            value = np.zeros_like(np.asarray(inputs["input_ids"]))
        out[name] = np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.int64)
    return out


@dataclass
class TorchEngine:
    """The PyTorch model itself, on ``device`` (cpu or cuda, where the model already is);
    ``precision`` bf16 runs under that device's autocast (the model's Linear weights are
    already bf16, see ClaimVerifier), int8 is a dynamically quantised model (CPU only)."""

    model: Any
    precision: str = "fp32"
    name: RuntimeName = "torch"
    device: str = "cpu"

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        import torch

        kind = torch.device(self.device).type
        with torch.inference_mode():
            if kind != "cpu":
                inputs = {key: value.to(self.device) for key, value in inputs.items()}
            with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits = self.model(**inputs).logits
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()


@dataclass
class OnnxRuntimeEngine:
    """An ONNX Runtime CPU session on the export (fp32, or dynamically quantised int8)."""

    session: Any
    precision: str = "fp32"
    name: RuntimeName = "onnxruntime"
    input_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        logits = self.session.run(None, _numpy_inputs(inputs, self.input_names))[0]
        return softmax(logits)


@dataclass
class OpenVinoEngine:
    """An OpenVINO model compiled from the export for the CPU. ``precision`` is what the
    plugin actually runs (bf16 is requested and falls back to fp32 on CPUs without it)."""

    compiled: Any
    precision: str = "bf16"
    name: RuntimeName = "openvino"
    input_names: tuple[str, ...] = field(init=False)
    _request: Any = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.input_names = tuple(port.get_any_name() for port in self.compiled.inputs)
        self._request = self.compiled.create_infer_request()

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        feeds = _numpy_inputs(inputs, self.input_names)
        with self._lock:  # one infer request: one forward pass at a time
            result = self._request.infer(feeds)
            logits = np.array(result[self.compiled.output(0)])
        return softmax(logits)


# ---- export at registration -------------------------------------------------------------
@dataclass(frozen=True)
class ParityReport:
    """How the ONNX export compares with PyTorch fp32 on a fixed sample of pairs.

    ``exportable`` is True only when the export succeeded and every probability is within
    ``tolerance`` of PyTorch's; ``reason`` says why not otherwise.
    """

    exportable: bool
    pairs: int
    agreement: float | None = None
    max_prob_diff: float | None = None
    tolerance: float = 1e-3
    opset: int = OPSET
    inputs: tuple[str, ...] = ()
    sha256: str | None = None
    reason: str | None = None

    def to_meta(self) -> dict[str, Any]:
        """The ``onnx`` entry of ``citeops.json``."""
        out = dataclasses.asdict(self)
        out["inputs"] = list(self.inputs)
        out["file"] = ONNX_FILE if self.exportable else None
        return out

    def mlflow_metrics(self) -> dict[str, float]:
        out = {"onnx_parity_pairs": float(self.pairs), "onnx_exportable": float(self.exportable)}
        if self.agreement is not None:
            out["onnx_parity_agreement"] = self.agreement
        if self.max_prob_diff is not None:
            out["onnx_parity_max_prob_diff"] = self.max_prob_diff
        return out


def _logits_module(model: Any, names: Sequence[str]) -> Any:
    """The classifier as a module of positional tensors in, logits out (what tracing needs)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    # eval: the exporter restores the wrapper's mode afterwards, recursively, and a new
    # module is in training mode; the classifier would be left with dropout on
    return LogitsOnly().eval()


def export_onnx(model: Any, tokenizer: Any, path: Path) -> tuple[str, ...]:
    """Export the classifier to ``path`` (TorchScript exporter, opset 17) with dynamic batch
    and sequence axes on every input; returns the input names.

    Raises:
        ExportError: the exporter failed.
    """
    import torch

    names = tuple(n for n in ONNX_INPUTS if n in tokenizer.model_input_names)
    # rows of different lengths: with no padding in the traced batch, the attention mask
    # code may take a no-padding shortcut that the trace would then keep for every batch
    sample = tokenizer(
        ["A short evidence.", "A longer evidence sentence, with several more words in it."],
        ["A claim.", "Another claim about the evidence."],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(sample[name] for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    model.eval()
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                _logits_module(model, names),
                args,
                str(path),
                input_names=list(names),
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as error:  # noqa: BLE001 - any exporter failure means "not exportable"
        raise ExportError(f"ONNX export failed: {type(error).__name__}: {error}") from None
    return names


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the TorchScript exporter's deprecation and tracer warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def parity_pairs(settings: Settings) -> list[tuple[str, str]]:
    """The fixed parity sample: ``serve.parity_pairs`` test pairs of the evaluation datasets
    (seeded shuffle, interleaved across datasets), or built-in pairs without data."""
    from citeops.tasks.data.multivers import read_split, shuffled

    per_set: list[list[tuple[str, str]]] = []
    for dataset in settings.evaluate.datasets:
        try:
            examples = shuffled(read_split(settings.data_dir, dataset, "test"), seed=0)
        except CiteopsError as error:
            log.warning("parity sample without %s: %s", dataset, error)
            continue
        per_set.append([(ex.claim, ex.evidence) for ex in examples])
    mixed = [pair for group in zip(*per_set, strict=False) for pair in group] if per_set else []
    pairs = mixed[: settings.serve.parity_pairs]
    return pairs or list(KNOWN_PAIRS)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def export_with_parity(
    folder: Path,
    settings: Settings,
    exporter: Callable[[Any, Any, Path], tuple[str, ...]] | None = None,
) -> ParityReport:
    """Export the ``save_pretrained`` classifier in ``folder`` to ``folder/model.onnx``,
    compare it with PyTorch fp32 on the parity sample (written to ``parity-sample.json``),
    and record the report as ``onnx`` in the folder's ``citeops.json``.

    Never raises for a model that cannot be exported or fails parity: the report says
    ``exportable: False`` with the reason, and the ONNX file is removed. ``exporter``
    replaces :func:`export_onnx` (tests).
    """
    from citeops.tasks.model.predictor import ClaimVerifier, _read_meta
    from citeops.tasks.model.registry import write_meta

    folder = Path(folder)
    onnx_path = folder / ONNX_FILE
    pairs = parity_pairs(settings)
    (folder / PARITY_FILE).write_text(json.dumps([list(p) for p in pairs]))
    tolerance = settings.serve.parity_max_prob_diff
    try:
        verifier = ClaimVerifier.from_dir(folder, "fp32", folder=folder)
        names = (exporter or export_onnx)(verifier.model, verifier.tokenizer, onnx_path)
        reference = encoded_proba(verifier, pairs)
        exported = dataclasses.replace(
            verifier, engine=_onnxruntime_engine(onnx_path, "fp32", threads=settings.serve.threads)
        )
        candidate = encoded_proba(exported, pairs)
    except Exception as error:  # noqa: BLE001 - any failure marks the version not exportable
        onnx_path.unlink(missing_ok=True)
        report = ParityReport(False, len(pairs), tolerance=tolerance, reason=str(error))
    else:
        diff = float(np.abs(reference - candidate).max())
        agree = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
        ok = diff <= tolerance
        report = ParityReport(
            exportable=ok,
            pairs=len(pairs),
            agreement=agree,
            max_prob_diff=diff,
            tolerance=tolerance,
            inputs=names,
            sha256=file_sha256(onnx_path) if ok else None,
            reason=None if ok else f"max probability difference {diff:.2e} > {tolerance:.0e}",
        )
        if not ok:
            onnx_path.unlink(missing_ok=True)
    meta = _read_meta(folder)
    meta[ONNX_META_KEY] = report.to_meta()
    write_meta(folder, meta)
    level = logging.INFO if report.exportable else logging.WARNING
    log.log(level, "ONNX export: %s", _describe_report(report))
    return report


def _describe_report(report: ParityReport) -> str:
    if not report.exportable:
        return f"not exportable ({report.reason}); PyTorch will serve this version"
    return (
        f"parity on {report.pairs} pairs: agreement {report.agreement:.4f}, "
        f"max probability difference {report.max_prob_diff:.2e}"
    )


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


# ---- building engines ---------------------------------------------------------------------
def _threads(threads: int | None) -> int:
    import torch

    return threads or torch.get_num_threads()


def _onnxruntime_engine(path: Path, precision: str, threads: int | None) -> OnnxRuntimeEngine:
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeUnavailable("onnxruntime is not installed (make setup)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxRuntimeEngine(session, precision)


def _int8_copy(path: Path, cache_dir: Path) -> Path:
    """A dynamically quantised (int8 weights) copy of the export, made once and cached."""
    target = cache_dir / f"{file_sha256(path)[:16]}-int8.onnx"
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        staged = Path(tmp) / target.name
        quantize_dynamic(str(path), str(staged), weight_type=QuantType.QInt8)
        os.replace(staged, target)
    return target


def _openvino_engine(path: Path, precision: str, threads: int | None) -> OpenVinoEngine:
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailable("openvino is not installed (make setup)") from None
    hint = {"bf16": "bf16", "fp32": "f32"}[precision]
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": _threads(threads)}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return OpenVinoEngine(compiled, "bf16" if "bf16" in actual else "fp32")


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
    if runtime == "onnxruntime":
        if precision == "int8":
            path = _int8_copy(path, settings.state_dir / "onnx-int8")
        engine: Engine = _onnxruntime_engine(path, precision, threads)
    else:
        engine = _openvino_engine(path, precision, threads)
    return dataclasses.replace(verifier, engine=engine)


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
