"""Serving the siamese head in two passes: the evidence alone, the claim alone.

A pair's token ids (``[CLS] evidence [SEP] claim [SEP]``, from ``encode_pair``) are split
at the first separator into an evidence row and a claim row (behind a masked placeholder,
so its tokens keep the positions they have in the pair: the maths of
:mod:`citeops.tasks.classifier.siamese`). Each side is one ordinary padded batch through
the runtime's *side encoder* (PyTorch, or the exported encoder on ONNX Runtime or
OpenVINO), which returns mean-pooled embeddings; the small linear head runs here in
numpy. Evidence embeddings are looked up in an :class:`EvidenceCache` when one is given,
and an evidence repeated within a batch is encoded once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from citeops.tasks.inference.cache import EvidenceCache, evidence_digest
from citeops.tasks.inference.engines import softmax

# runs one side's padded batch: {"input_ids", "attention_mask"} (int64, (n, width)) ->
# mean-pooled embeddings, float32 (n, hidden)
Embed = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class SiameseHead:
    """The classifier over ``[u, v, |u - v|, u * v]``, in float32 numpy."""

    weight: np.ndarray  # (labels, 4 * hidden)
    bias: np.ndarray  # (labels,)

    @classmethod
    def of(cls, model: Any) -> SiameseHead:
        """The head of a siamese model (read before any cast or quantisation)."""
        layer = model.classifier
        weight = layer.weight.detach().float().cpu().numpy().copy()
        bias = layer.bias.detach().float().cpu().numpy().copy()
        return cls(weight, bias)

    def proba(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Class probabilities of claims ``u`` against evidences ``v`` (rows paired)."""
        u, v = np.asarray(u, np.float32), np.asarray(v, np.float32)
        features = np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
        return softmax(features @ self.weight.T + self.bias)


def split_ids(ids: Sequence[int], sep_id: int | None) -> tuple[list[int], list[int]]:
    """``(evidence, claim)`` of one pair's ids: the evidence up to and including the first
    separator, the claim row as the pair's first token (masked when encoded) and the rest.
    Without a separator the whole input is the evidence and the claim is empty."""
    ids = list(ids)
    cut = ids.index(sep_id) + 1 if sep_id is not None and sep_id in ids else len(ids)
    return ids[:cut], ids[:1] + ids[cut:]


def pad_side(
    rows: Sequence[Sequence[int]], pad_id: int, pad_multiple: int, masked_first: bool
) -> dict[str, np.ndarray]:
    """One side's rows as a padded batch (width the longest rounded up to
    ``pad_multiple``); ``masked_first``: the first column is a placeholder, not attended."""
    longest = max(len(row) for row in rows)
    width = -(-longest // pad_multiple) * pad_multiple if pad_multiple > 1 else longest
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    if masked_first:
        mask[:, 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def evidence_embeddings(
    evidences: Sequence[Sequence[int]],
    embed: Embed,
    pad_id: int,
    pad_multiple: int,
    cache: EvidenceCache | None = None,
    namespace: str = "",
) -> np.ndarray:
    """Embeddings of the evidence rows, each distinct evidence encoded once, from the
    cache where it holds it (and stored there after)."""
    digests = [evidence_digest(row) for row in evidences]
    found: dict[bytes, np.ndarray] = {}
    missing: dict[bytes, Sequence[int]] = {}
    for digest, row in zip(digests, evidences, strict=True):
        if digest in found or digest in missing:
            continue
        cached = cache.get(namespace, digest) if cache is not None else None
        if cached is None:
            missing[digest] = row
        else:
            found[digest] = cached
    if missing:
        rows = list(missing.values())
        embedded = embed(pad_side(rows, pad_id, pad_multiple, masked_first=False))
        for digest, vector in zip(missing, np.asarray(embedded, np.float32), strict=True):
            found[digest] = vector
            if cache is not None:
                cache.put(namespace, digest, vector)
    return np.stack([found[digest] for digest in digests])


def two_pass_proba(
    batch: Sequence[Sequence[int]],
    embed: Embed,
    head: SiameseHead,
    sep_id: int | None,
    pad_id: int,
    pad_multiple: int = 16,
    cache: EvidenceCache | None = None,
    namespace: str = "",
) -> np.ndarray:
    """Class probabilities of pre-tokenised pairs, shape (N, labels), in input order."""
    split = [split_ids(ids, sep_id) for ids in batch]
    v = evidence_embeddings(
        [evidence for evidence, _ in split], embed, pad_id, pad_multiple, cache, namespace
    )
    claims = [claim for _, claim in split]
    u = np.asarray(embed(pad_side(claims, pad_id, pad_multiple, masked_first=True)), np.float32)
    return head.proba(u, v)
