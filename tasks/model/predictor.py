"""Inference: a trained classifier loaded from a folder or an MLflow model URI.

This is the one inference path that evaluation, drift reference scoring and the serving
endpoint share. The evidence is first cut down to its claim-relevant sentences when the
model was trained so (its ``citeops.json`` records the selection, see
:mod:`tasks.model.preprocess`); evidence may be one text or a list of sentences. Pairs
are then tokenised **evidence first, claim second** with ``longest_first`` truncation,
batched by similar length, run without gradient tracking.

A logged model (see :mod:`tasks.model.registry`) is an MLflow pyfunc model whose
``artifacts/hf_model`` folder is a Hugging Face ``save_pretrained`` folder (model and
tokenizer); :func:`load_verifier` finds that folder whatever the URI scheme.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from citeops.tasks.data.multivers import LABELS
from citeops.tasks.errors import CiteopsError
from citeops.tasks.model.preprocess import Evidence, EvidenceSelection, EvidenceSelector
from citeops.tasks.model.runtimes import Engine, TorchEngine

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

Precision = Literal["fp32", "bf16", "int8"]
HF_DIR_NAME = "hf_model"
META_FILE = "citeops.json"  # written beside the HF files: labels, max_length, base model


class ModelLoadError(CiteopsError):
    """A model URI or folder cannot be resolved or loaded."""


@dataclass
class ClaimVerifier:
    """A sequence classifier with its tokenizer, ready to score (claim, evidence) pairs."""

    model: Any
    tokenizer: Any
    max_length: int = 512
    precision: Precision = "fp32"
    labels: tuple[str, ...] = LABELS
    model_uri: str | None = None
    model_version: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # the forward pass (tasks/model/runtimes.py); None: this PyTorch model at ``precision``
    engine: Engine | None = None
    # the folder it was loaded from (its ONNX export; a downloaded one is gone after loading)
    folder: Path | None = None
    selection: EvidenceSelection = field(default_factory=EvidenceSelection)
    # where the PyTorch model runs (cpu, cuda); see runtimes.resolve_device
    device: str = "cpu"
    # why this runtime serves: a code of runtimes.BASES and the sentence behind it
    runtime_basis: str = "configured"
    runtime_reason: str = ""

    def __post_init__(self) -> None:
        import torch

        self.selector = EvidenceSelector(self.selection, self.tokenizer, self.max_length)
        self.model.eval()
        if self.precision == "bf16":
            # autocast would cast every Linear weight to bf16 on every forward pass; doing
            # it once gives the same numbers without that cost (LayerNorm, softmax and
            # embeddings stay fp32 under autocast either way)
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        if self.precision == "int8":
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        if self.device != "cpu":
            self.model.to(self.device)

    @classmethod
    def from_dir(
        cls,
        path: Path | str,
        precision: Precision = "fp32",
        max_length: int | None = None,
        **kw: Any,
    ) -> ClaimVerifier:
        """Load a ``save_pretrained`` folder (as written by training).

        Raises:
            ModelLoadError: the folder is not a model, or its weights do not match the
                architecture (see :func:`check_loading_info`).
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from citeops.tasks.model.siamese import register

        register()  # a siamese classifier's model_type
        folder = Path(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                folder, output_loading_info=True
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"{folder}: not a loadable model folder ({error})") from None
        check_loading_info(folder, info)
        meta = _read_meta(folder)
        labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        length = max_length or int(meta.get("max_length", 512))
        selection = EvidenceSelection.from_meta(meta)
        return cls(
            model, tokenizer, length, precision, labels, meta=meta, selection=selection, **kw
        )

    def select_evidence(self, claims: Sequence[str], evidences: Sequence[Evidence]) -> list[str]:
        """The evidence texts the model sees: the model's evidence selection applied (each
        evidence is one text or a list of sentences; lists are joined when selection is off).
        """
        return self.selector.select_many(claims, evidences)

    def encode(self, claims: Sequence[str], evidences: Sequence[Evidence]) -> dict[str, Any]:
        """Tokenise pairs, evidence first and claim second, padded to the longest in the batch
        (evidence selection applied)."""
        return self._tokenize(claims, self.select_evidence(claims, evidences))

    def _tokenize(self, claims: Sequence[str], evidences: Sequence[str]) -> dict[str, Any]:
        return self.tokenizer(
            list(evidences),
            list(claims),
            truncation="longest_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )

    def predict_proba(
        self, claims: Sequence[str], evidences: Sequence[Evidence], batch_size: int = 16
    ) -> np.ndarray:
        """Class probabilities, shape (N, len(labels)), in the order of the inputs.

        Evidence selection is applied first; pairs are then sorted by length and batched
        so that padding stays small.
        """
        import torch

        if len(claims) != len(evidences):
            raise ValueError("claims and evidences must have the same length")
        if not claims:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        evidences = self.select_evidence(claims, evidences)
        order = np.argsort([len(c) + len(e) for c, e in zip(claims, evidences, strict=True)])
        out = np.zeros((len(claims), len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = self._tokenize([claims[i] for i in idx], [evidences[i] for i in idx])
                out[idx] = self.forward_proba(batch)
        return out

    @property
    def runtime(self) -> str:
        """The runtime of the forward pass: torch, onnxruntime or openvino."""
        return self.engine.name if self.engine is not None else "torch"

    @property
    def runtime_precision(self) -> str:
        """The precision the runtime computes in (fp32, bf16, int8)."""
        return self.engine.precision if self.engine is not None else self.precision

    @property
    def runtime_device(self) -> str:
        """Where the forward pass runs: ``device`` for PyTorch; the other runtimes run on
        the CPU."""
        return "cpu" if self.engine is not None else self.device

    def forward_proba(self, inputs: dict[str, Any]) -> np.ndarray:
        """Class probabilities of padded token tensors (on the CPU), on this verifier's
        runtime and device."""
        engine = self.engine or TorchEngine(self.model, self.precision, device=self.device)
        return engine.proba(inputs)

    def encode_pair(self, claim: str, evidence: Evidence) -> list[int]:
        """Token ids of one pair (evidence selected, evidence first, claim second,
        truncated, unpadded).

        For callers that batch pairs themselves (the serving micro-batcher): tokenise
        each pair once, group pairs of similar length, then :meth:`predict_encoded`.
        """
        return self.tokenizer(
            self.selector.select(claim, evidence),
            claim,
            truncation="longest_first",
            max_length=self.max_length,
        )["input_ids"]

    def predict_encoded(self, batch: Sequence[Sequence[int]], pad_multiple: int = 16) -> np.ndarray:
        """Class probabilities for pre-tokenised pairs (from :meth:`encode_pair`), shape
        (N, len(labels)), in input order, as one forward pass padded to the longest
        (rounded up to ``pad_multiple``, so that few distinct shapes reach the kernels).

        Token type ids are rebuilt from the first separator token, as the tokenizer would.
        """
        import torch

        if not batch:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        longest = max(len(ids) for ids in batch)
        width = max(longest, min(-(-longest // pad_multiple) * pad_multiple, self.max_length))
        pad_id = self.tokenizer.pad_token_id or 0
        sep_id = self.tokenizer.sep_token_id
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        token_types = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
            if sep_id is not None and sep_id in ids:
                first_sep = list(ids).index(sep_id)
                token_types[row, first_sep + 1 : len(ids)] = 1
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        if "token_type_ids" in self.tokenizer.model_input_names:
            inputs["token_type_ids"] = token_types
        return self.forward_proba(inputs)

    def predict_labels(self, claims: Sequence[str], evidences: Sequence[Evidence]) -> list[str]:
        probs = self.predict_proba(claims, evidences)
        return [self.labels[i] for i in probs.argmax(axis=1)]


def check_loading_info(folder: Path, info: dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights do not match its architecture.

    ``info`` is what ``from_pretrained(..., output_loading_info=True)`` returns. A missing
    weight would be randomly initialised (for example a folder without ``classifier.*``
    would serve a random head), an unexpected one means the files belong to another
    architecture; either way the model is not the one that was trained and evaluated.

    Raises:
        ModelLoadError: listing the missing, unexpected and mismatched weights.
    """
    problems = []
    for key, what in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "unexpected"),
        ("mismatched_keys", "mismatched"),
    ):
        names = sorted(str(name) for name in info.get(key) or ())
        if names:
            shown = ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else ""
            )
            problems.append(f"{what} weights: {shown}")
    if info.get("error_msgs"):
        problems.append("errors: " + "; ".join(str(m) for m in info["error_msgs"]))
    if problems:
        raise ModelLoadError(
            f"{folder}: the checkpoint does not match the model ({'; '.join(problems)}); "
            "refusing to load it with randomly initialised weights. Use a folder written "
            "by training (save_pretrained of the fine-tuned classifier)."
        )


def _read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def find_hf_dir(root: Path) -> Path:
    """The folder under ``root`` holding the Hugging Face files (``config.json``)."""
    if (root / "config.json").is_file():
        return root
    for candidate in sorted(root.rglob("config.json")):
        if (candidate.parent / "tokenizer_config.json").is_file():
            return candidate.parent
    raise ModelLoadError(f"{root}: no Hugging Face model folder inside")


def resolve_version(model_uri: str, settings: Settings) -> str | None:
    """The registered version behind ``models:/name/version`` or ``models:/name@alias``."""
    if not model_uri.startswith("models:/"):
        return None
    from mlflow import MlflowClient

    name_part = model_uri[len("models:/") :].strip("/")
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    if "@" in name_part:
        name, alias = name_part.split("@", 1)
        return str(client.get_model_version_by_alias(name, alias).version)
    name, _, version = name_part.partition("/")
    return version or None


def load_verifier(
    model_uri: str,
    settings: Settings,
    precision: Precision = "fp32",
    dst: Path | None = None,
    runtime: str | None = None,
) -> ClaimVerifier:
    """Load a model by MLflow URI (``models:/name/1``, ``models:/name@champion``,
    ``runs:/<id>/model``) or by a local folder path. An MLflow model is downloaded into
    ``dst``, else into a temporary folder that is removed once it is loaded (a serving
    process deploys many models: none of their downloads stays behind).

    ``runtime`` None: PyTorch at ``precision``. Otherwise torch | onnxruntime | openvino |
    auto, each at its configured precision (``serve.precision``, ``serve.*_precision``),
    as serving runs it (:func:`citeops.tasks.model.runtimes.apply_runtime`).

    Raises:
        ModelLoadError: the URI does not resolve or the files are not a model.
        RuntimeUnavailable: the runtime asked for is not installed.
    """
    if runtime is not None:
        precision = "fp32"  # the runtime's precision comes from the settings
    local = Path(model_uri).expanduser()
    if "://" not in model_uri and not model_uri.startswith(("models:", "runs:")):
        if not local.exists():
            raise ModelLoadError(f"{model_uri}: no such model folder")
        folder = find_hf_dir(local)
        loaded = ClaimVerifier.from_dir(folder, precision, model_uri=model_uri, folder=folder)
        return _on_runtime(loaded, runtime, settings)
    if dst is None:  # a download of its own, removed once the model is in memory
        import tempfile

        with tempfile.TemporaryDirectory(prefix="citeops-model-") as tmp:
            return _download_and_load(model_uri, settings, precision, Path(tmp), runtime)
    return _download_and_load(model_uri, settings, precision, dst, runtime)


def _on_runtime(verifier: ClaimVerifier, runtime: str | None, settings: Settings) -> ClaimVerifier:
    """``verifier`` given ``runtime`` while its folder (and ONNX export) still exists."""
    if runtime is None:
        return verifier
    from citeops.tasks.model.runtimes import apply_runtime

    return apply_runtime(verifier, runtime, settings)


def _download_and_load(
    model_uri: str, settings: Settings, precision: Precision, dst: Path, runtime: str | None = None
) -> ClaimVerifier:
    """Download the MLflow model ``model_uri`` into ``dst`` and load it from there."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)  # else an inherited one is used
    try:
        version = resolve_version(model_uri, settings)
        root = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst))
    except Exception as error:  # mlflow raises several types for an unknown URI
        raise ModelLoadError(f"{model_uri}: cannot be resolved ({error})") from None
    folder = find_hf_dir(Path(root))
    loaded = ClaimVerifier.from_dir(
        folder, precision, model_uri=model_uri, model_version=version, folder=folder
    )
    return _on_runtime(loaded, runtime, settings)
