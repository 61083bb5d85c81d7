"""Inference engines behind one small interface: PyTorch, ONNX Runtime and OpenVINO."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from citeops.tasks.classifier.artifact import file_sha256
from citeops.tasks.errors import CiteopsError

RuntimeName = Literal["torch", "onnxruntime", "openvino"]


RUNTIMES: tuple[RuntimeName, ...] = ("torch", "onnxruntime", "openvino")


ONNX_FILE = "model.onnx"


ONNX_META_KEY = "onnx"  # the export's entry in citeops.json


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# what an export computes: the whole pair classifier (logits), or, for the siamese head,
# the side encoder (one side's mean-pooled embedding; the head runs in numpy)
CLASSIFIER_GRAPH = "classifier"
SIDE_ENCODER_GRAPH = "side_encoder"
SIDE_INPUTS = ("input_ids", "attention_mask")


class RuntimeUnavailable(CiteopsError):
    """A runtime cannot serve this model here (not installed, or no parity-checked export)."""


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

    ``embed`` (a siamese model; ``graph`` is :data:`SIDE_ENCODER_GRAPH` for an export)
    takes one side's ``input_ids`` and ``attention_mask`` and returns its mean-pooled
    embeddings, float32, shape (batch, hidden).
    """

    name: RuntimeName
    precision: str
    graph: str

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray: ...

    def embed(self, inputs: Mapping[str, Any]) -> np.ndarray: ...


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
    graph: str = CLASSIFIER_GRAPH

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        import torch

        kind = torch.device(self.device).type
        with torch.inference_mode():
            if kind != "cpu":
                inputs = {key: value.to(self.device) for key, value in inputs.items()}
            with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits = self.model(**inputs).logits
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def embed(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """One side's embeddings through the siamese model's side encoder."""
        import torch

        kind = torch.device(self.device).type
        tensors = [torch.as_tensor(np.asarray(inputs[name])) for name in SIDE_INPUTS]
        with torch.inference_mode():
            tensors = [tensor.to(self.device) for tensor in tensors]
            with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                pooled = self.model.side_encoder()(*tensors)
            return pooled.float().cpu().numpy()


@dataclass
class OnnxRuntimeEngine:
    """An ONNX Runtime CPU session on the export (fp32, or dynamically quantised int8)."""

    session: Any
    precision: str = "fp32"
    name: RuntimeName = "onnxruntime"
    graph: str = CLASSIFIER_GRAPH
    input_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def run(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """The graph's first output, float32."""
        out = self.session.run(None, _numpy_inputs(inputs, self.input_names))[0]
        return np.asarray(out, dtype=np.float32)

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        return softmax(self.run(inputs))

    def embed(self, inputs: Mapping[str, Any]) -> np.ndarray:
        return self.run(inputs)


@dataclass
class OpenVinoEngine:
    """An OpenVINO model compiled from the export for the CPU. ``precision`` is what the
    plugin actually runs (bf16 is requested and falls back to fp32 on CPUs without it)."""

    compiled: Any
    precision: str = "bf16"
    name: RuntimeName = "openvino"
    graph: str = CLASSIFIER_GRAPH
    input_names: tuple[str, ...] = field(init=False)
    _request: Any = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.input_names = tuple(port.get_any_name() for port in self.compiled.inputs)
        self._request = self.compiled.create_infer_request()

    def run(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """The graph's first output, float32."""
        feeds = _numpy_inputs(inputs, self.input_names)
        with self._lock:  # one infer request: one forward pass at a time
            result = self._request.infer(feeds)
            return np.array(result[self.compiled.output(0)], dtype=np.float32)

    def proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        return softmax(self.run(inputs))

    def embed(self, inputs: Mapping[str, Any]) -> np.ndarray:
        return self.run(inputs)


# ---- building engines ---------------------------------------------------------------------
def _threads(threads: int | None) -> int:
    import torch

    return threads or torch.get_num_threads()


def onnxruntime_engine(
    path: Path, precision: str, threads: int | None, graph: str = CLASSIFIER_GRAPH
) -> OnnxRuntimeEngine:
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
    return OnnxRuntimeEngine(session, precision, graph=graph)


def int8_copy(path: Path, cache_dir: Path) -> Path:
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


def openvino_engine(
    path: Path, precision: str, threads: int | None, graph: str = CLASSIFIER_GRAPH
) -> OpenVinoEngine:
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailable("openvino is not installed (make setup)") from None
    hint = {"bf16": "bf16", "fp32": "f32"}[precision]
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": _threads(threads)}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    return OpenVinoEngine(compiled, openvino_precision(compiled), graph=graph)


def openvino_precision(compiled: Any) -> str:
    """What a compiled OpenVINO model runs at: ``bf16`` where the plugin took the bf16 hint
    (it reports ``<Type: 'bfloat16'>``), else ``fp32`` (CPUs without bf16 fall back)."""
    import openvino as ov

    return "bf16" if compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else "fp32"
