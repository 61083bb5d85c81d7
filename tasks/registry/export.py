"""ONNX export of a model folder, checked for parity against PyTorch fp32 before it is trusted."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.classifier.artifact import PARITY_FILE, file_sha256, read_meta, write_meta
from citeops.tasks.errors import CiteopsError
from citeops.tasks.inference.engines import (
    CLASSIFIER_GRAPH,
    ONNX_FILE,
    ONNX_INPUTS,
    ONNX_META_KEY,
    SIDE_ENCODER_GRAPH,
    SIDE_INPUTS,
    onnxruntime_engine,
)
from citeops.tasks.inference.predictor import ClaimVerifier
from citeops.tasks.inference.runtimes import encoded_proba
from citeops.tasks.inference.smoke import parity_pairs

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
log = logging.getLogger(__name__)


OPSET = 17


EXPORTABLE_TAG = "citeops.onnx_exportable"  # run and model-version tag: "true" / "false"


class ExportError(CiteopsError):
    """The classifier could not be exported to ONNX."""


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
    # what the file computes: the pair classifier, or a siamese model's side encoder
    graph: str = CLASSIFIER_GRAPH

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


def export_graph(model: Any) -> str:
    """What :func:`export_onnx` writes for ``model``: the side encoder of a siamese model
    (the head runs in numpy, see :mod:`citeops.tasks.inference.twopass`), else the
    whole classifier."""
    return SIDE_ENCODER_GRAPH if hasattr(model, "side_encoder") else CLASSIFIER_GRAPH


def export_onnx(model: Any, tokenizer: Any, path: Path) -> tuple[str, ...]:
    """Export the classifier to ``path`` (TorchScript exporter, opset 17) with dynamic batch
    and sequence axes on every input; returns the input names. A siamese model exports
    its side encoder (:func:`export_side_encoder`).

    Raises:
        ExportError: the exporter failed.
    """
    if export_graph(model) == SIDE_ENCODER_GRAPH:
        return export_side_encoder(model, tokenizer, path)
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
    model.eval()
    _export(_logits_module(model, names), args, names, "logits", path)
    return names


def export_side_encoder(model: Any, tokenizer: Any, path: Path) -> tuple[str, ...]:
    """Export a siamese model's side encoder (``input_ids``, ``attention_mask`` in; the
    mean-pooled ``embedding`` out) with dynamic batch and sequence axes.

    Raises:
        ExportError: the exporter failed.
    """
    # rows of different lengths, one with a masked first column (a claim row): the
    # trace must keep the general mask code
    sample = tokenizer(
        ["A short evidence.", "A longer evidence sentence, with several more words in it."],
        padding=True,
        return_tensors="pt",
    )
    mask = sample["attention_mask"].clone()
    mask[0, 0] = 0
    model.eval()
    _export(
        model.side_encoder().eval(), (sample["input_ids"], mask), SIDE_INPUTS, "embedding", path
    )
    model.eval()
    return SIDE_INPUTS


def _export(
    module: Any, args: tuple[Any, ...], names: Sequence[str], output: str, path: Path
) -> None:
    """``torch.onnx.export`` of ``module`` (TorchScript exporter, :data:`OPSET`) with
    dynamic batch and sequence axes on every input and a dynamic batch axis on the output.

    Raises:
        ExportError: the exporter failed.
    """
    import torch

    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {output: {0: "batch"}}
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(names),
                output_names=[output],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as error:  # noqa: BLE001 - any exporter failure means "not exportable"
        raise ExportError(f"ONNX export failed: {type(error).__name__}: {error}") from None


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the TorchScript exporter's deprecation and tracer warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


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

    folder = Path(folder)
    onnx_path = folder / ONNX_FILE
    pairs = parity_pairs(settings)
    (folder / PARITY_FILE).write_text(json.dumps([list(p) for p in pairs]))
    tolerance = settings.registry.parity_max_prob_diff
    try:
        verifier = ClaimVerifier.from_dir(folder, "fp32", folder=folder)
        names = (exporter or export_onnx)(verifier.model, verifier.tokenizer, onnx_path)
        graph = SIDE_ENCODER_GRAPH if tuple(names) == SIDE_INPUTS else CLASSIFIER_GRAPH
        reference = encoded_proba(verifier, pairs)
        engine = onnxruntime_engine(onnx_path, "fp32", settings.serve.threads, graph)
        exported = dataclasses.replace(verifier, engine=engine)
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
            graph=graph,
        )
        if not ok:
            onnx_path.unlink(missing_ok=True)
    meta = read_meta(folder)
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
