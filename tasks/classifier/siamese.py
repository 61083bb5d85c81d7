"""The siamese classifier head: a sentence encoder's own representation, fine-tuned.

all-MiniLM-L6-v2 was trained to map a text to the mean of its last hidden states, so
that related texts land close together; as a cross-encoder (evidence and claim in one
sequence, the first token's state classified) that training is unused, and the first
token's pooler was never trained. :class:`SiameseBertForSequenceClassification` uses it:

- it reads the same inputs as a cross-encoder (``input_ids``, ``attention_mask``,
  ``token_type_ids`` of the evidence-first pair), so tokenisation, evidence selection,
  batching and serving are unchanged;
- in **two passes** it encodes the evidence (segment 0: ``[CLS] evidence [SEP]``) alone and
  the claim (segment 1: ``claim [SEP]``) alone, each as an ordinary padded batch with a
  plain 2-D attention mask and ordinary positions (the claim's batch keeps a masked
  placeholder in front, so its first token sits at position 1, as after the pair's
  ``[CLS]``): attention costs e² + c² instead of (e + c)², the encoder is a plain BERT
  that ONNX Runtime and OpenVINO run as such (:class:`SideEncoder` is what is exported),
  and an evidence's embedding does not depend on the claim (it can be cached);
- each segment is mean-pooled (``v`` evidence, ``u`` claim) and a linear layer classifies
  ``[u, v, |u - v|, u * v]``: the softmax classifier Sentence-BERT was trained with on
  NLI (Reimers and Gurevych, 2019).

The maths is that of the earlier one-pass form (one sequence, a block-diagonal 4-D mask,
positions restarting at the claim), kept as :func:`one_pass_features` to check it.

It is a Hugging Face model (``model_type`` ``citeops-siamese-bert``): ``save_pretrained``
and :func:`register` + ``AutoModelForSequenceClassification.from_pretrained`` round-trip
it. A saved folder is also **portable**: ``save_pretrained`` copies this file into it and
names it in ``config.json``'s ``auto_map``, so plain transformers outside citeops loads it
with ``from_pretrained(folder, trust_remote_code=True)`` (or
``pipeline("text-classification", model=folder, trust_remote_code=True)``). This file
therefore imports nothing but torch and transformers.

BERT-family encoders only (MiniLM is one); other bases use the cross-encoder head.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "citeops-siamese-bert"


class SiameseBertConfig(BertConfig):
    model_type = MODEL_TYPE
    # save_pretrained copies this file into the folder and writes config.json's auto_map,
    # so plain transformers loads a saved model with trust_remote_code=True, no citeops
    _auto_class = "AutoConfig"


def segment_masks(
    attention_mask: torch.Tensor, token_type_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(evidence, claim)``: float masks (batch, sequence) of each segment's real tokens."""
    real = attention_mask.to(torch.float32)
    claim = real * (token_type_ids == 1).to(torch.float32)
    return real - claim, claim


def block_attention(evidence: torch.Tensor, claim: torch.Tensor) -> torch.Tensor:
    """A (batch, 1, sequence, sequence) bool mask: a token attends only to real tokens of
    its own segment (padding rows attend to the evidence, so no row is empty)."""
    query_claim = claim.unsqueeze(2) > 0
    same = torch.where(query_claim, claim.unsqueeze(1), evidence.unsqueeze(1))
    return (same > 0).unsqueeze(1)


def segment_positions(evidence: torch.Tensor, claim: torch.Tensor) -> torch.Tensor:
    """Position ids that restart at the claim (its first token at 1, after a virtual
    ``[CLS]``), as in the claim's own encoding."""
    index = torch.cumsum(torch.ones_like(evidence), dim=1) - 1
    claim_start = evidence.sum(dim=1, keepdim=True)
    positions = torch.where(claim > 0, index - claim_start + 1, index)
    return positions.to(torch.long)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-6)


def split_pair(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The evidence-first pair batch as two ordinary padded batches, each ``(ids, mask)``:
    the evidence (segment 0, a prefix of each row) and the claim (segment 1) behind one
    masked placeholder column (the row's first token), so that its tokens keep the
    positions they have in the pair's own encoding (from 1). A row without claim tokens
    has an all-zero claim mask (its embedding is zero)."""
    evidence, claim = segment_masks(attention_mask, token_type_ids)
    evidence_len = evidence.sum(dim=1).to(torch.long)
    claim_len = claim.sum(dim=1).to(torch.long)
    evidence_width = max(int(evidence_len.max()), 1)
    evidence_side = (input_ids[:, :evidence_width], evidence[:, :evidence_width])
    width = int(claim_len.max()) + 1
    column = torch.arange(width, device=input_ids.device).unsqueeze(0)
    source = (evidence_len.unsqueeze(1) + column - 1).clamp(0, input_ids.shape[1] - 1)
    claim_ids = torch.gather(input_ids, 1, source)
    claim_ids[:, 0] = input_ids[:, 0]
    claim_mask = ((column >= 1) & (column <= claim_len.unsqueeze(1))).to(evidence.dtype)
    return evidence_side, (claim_ids, claim_mask)


def combine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The classifier's input ``[u, v, |u - v|, u * v]`` of claim ``u`` and evidence ``v``."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


class SideEncoder(torch.nn.Module):
    """One side (evidence or claim) of a pair: a plain BERT pass with a 2-D attention mask
    and ordinary positions, mean-pooled over the mask. What ONNX export writes for the
    siamese head; a row with an all-zero mask pools to zero."""

    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # an empty row attends to its first token (never pooled): no row is fully masked
        empty = attention_mask.sum(dim=1, keepdim=True) == 0
        first = torch.zeros_like(attention_mask)
        first[:, 0] = 1
        attend = torch.where(empty, first, attention_mask)
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attend,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        return mean_pool(hidden.float(), attention_mask)


class SiameseBertForSequenceClassification(BertPreTrainedModel):
    """A BERT encoder used as a siamese pair classifier (module docstring)."""

    config_class = SiameseBertConfig
    _auto_class = "AutoModelForSequenceClassification"  # see SiameseBertConfig

    def __init__(self, config: SiameseBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = torch.nn.Linear(4 * config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        features = self.pair_features(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def side_encoder(self) -> SideEncoder:
        """The encoder of one side, sharing this model's weights."""
        return SideEncoder(self.bert)

    def pair_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the classifier reads: ``[u, v, |u - v|, u * v]`` (claim ``u``, evidence ``v``),
        from two passes (:func:`split_pair`, :class:`SideEncoder`)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:  # no segments: the whole input is the evidence
            token_type_ids = torch.zeros_like(input_ids)
        (evidence_ids, evidence_mask), (claim_ids, claim_mask) = split_pair(
            input_ids, attention_mask, token_type_ids
        )
        encode = self.side_encoder()
        v = encode(evidence_ids, evidence_mask.to(attention_mask.dtype))
        u = encode(claim_ids, claim_mask.to(attention_mask.dtype))
        return combine(u, v)


def one_pass_features(
    model: SiameseBertForSequenceClassification,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
) -> torch.Tensor:
    """The features of the earlier one-pass form: one sequence, a block-diagonal 4-D mask,
    positions restarting at the claim (the reference the two passes are checked against)."""
    evidence, claim = segment_masks(attention_mask, token_type_ids)
    allowed = block_attention(evidence, claim)
    if model.config._attn_implementation == "eager":  # eager adds the mask to the scores
        blocked = torch.finfo(torch.float32).min
        allowed = torch.zeros(allowed.shape, device=input_ids.device).masked_fill(~allowed, blocked)
    hidden = model.bert(
        input_ids=input_ids,
        attention_mask=allowed,
        token_type_ids=torch.zeros_like(input_ids),
        position_ids=segment_positions(evidence, claim),
    ).last_hidden_state
    return combine(mean_pool(hidden, claim), mean_pool(hidden, evidence))


@cache
def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSequenceClassification`` know the siamese model
    (needed before loading a saved one); idempotent."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoConfig.register(MODEL_TYPE, SiameseBertConfig)
    AutoModelForSequenceClassification.register(
        SiameseBertConfig, SiameseBertForSequenceClassification
    )


def siamese_config(base: BertConfig, **overrides: Any) -> SiameseBertConfig:
    """The siamese config of a BERT-family ``base`` config (e.g. with the label maps)."""
    values = base.to_dict()
    values.pop("model_type", None)
    values.pop("architectures", None)
    return SiameseBertConfig(**(values | overrides))
