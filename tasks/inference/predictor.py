"""Inference: a trained classifier loaded from a folder or an MLflow model URI.

This is the one inference path that evaluation, drift reference scoring and the serving
endpoint share. The evidence is first cut down to its claim-relevant sentences when the
model was trained so (its ``citeops.json`` records the selection, see
:mod:`tasks.classifier.preprocess`); evidence may be one text or a list of sentences. Pairs
are then tokenised **evidence first, claim second** with ``longest_first`` truncation,
batched by similar length, run without gradient tracking.

A logged model (see :mod:`tasks.registry.register`) is an MLflow pyfunc model whose
``artifacts/hf_model`` folder is a Hugging Face ``save_pretrained`` folder (model and
tokenizer); :func:`load_verifier` finds that folder whatever the URI scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from citeops.tasks.classifier.artifact import ModelLoadError, check_loading_info, read_meta
from citeops.tasks.classifier.preprocess import Evidence, EvidenceSelection, EvidenceSelector
from citeops.tasks.data.multivers import LABELS
from citeops.tasks.inference.cache import EvidenceCache
from citeops.tasks.inference.engines import SIDE_ENCODER_GRAPH, Engine, TorchEngine
from citeops.tasks.inference.twopass import SiameseHead, two_pass_proba

Precision = Literal["fp32", "bf16", "int8"]

SIAMESE_MODEL_TYPE = "citeops-siamese-bert"  # tasks.classifier.siamese.MODEL_TYPE


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
    # siamese head: evidence embeddings kept across requests (None: none kept)
    evidence_cache: EvidenceCache | None = None

    def __post_init__(self) -> None:
        import uuid

        import torch

        self.selector = EvidenceSelector(self.selection, self.tokenizer, self.max_length)
        self.model.eval()
        config = getattr(self.model, "config", None)
        self.siamese = getattr(config, "model_type", None) == SIAMESE_MODEL_TYPE
        # the head in numpy, read before any cast: the two-pass path classifies with it
        self.head = SiameseHead.of(self.model) if self.siamese else None
        # names this loaded verifier in a shared evidence cache: a copy on another
        # runtime, a reload or another version never reads its entries
        self.cache_namespace = f"{self.model_version or '-'}|{uuid.uuid4().hex}"
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

        from citeops.tasks.classifier.siamese import register

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
        meta = read_meta(folder)
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
        if self.two_pass:
            mask = np.asarray(inputs["attention_mask"])
            ids = np.asarray(inputs["input_ids"])
            rows = [ids[i, : int(mask[i].sum())].tolist() for i in range(len(ids))]
            return self._two_pass(rows, pad_multiple=1)
        return self._engine().proba(inputs)

    def _engine(self) -> Engine:
        return self.engine or TorchEngine(self.model, self.precision, device=self.device)

    @property
    def two_pass(self) -> bool:
        """Whether pairs run as two side passes (a siamese model on PyTorch, or on an
        export of its side encoder; an older export of the whole pair runs as one)."""
        if not self.siamese:
            return False
        return self.engine is None or getattr(self.engine, "graph", "") == SIDE_ENCODER_GRAPH

    def _two_pass(self, batch: Sequence[Sequence[int]], pad_multiple: int) -> np.ndarray:
        assert self.head is not None
        return two_pass_proba(
            batch,
            self._engine().embed,
            self.head,
            self.tokenizer.sep_token_id,
            self.tokenizer.pad_token_id or 0,
            pad_multiple,
            self.evidence_cache,
            self.cache_namespace,
        )

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
        A siamese model runs two passes instead, the evidence's and the claim's, split at
        that token (:mod:`citeops.tasks.inference.twopass`), the evidence's embedding from
        ``evidence_cache`` when it holds it.
        """
        import torch

        if not batch:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.two_pass:
            return self._two_pass(batch, pad_multiple)
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
