"""The siamese classifier head: a sentence encoder's own representation, fine-tuned.

all-MiniLM-L6-v2 was trained to map a text to the mean of its last hidden states, so
that related texts land close together; as a cross-encoder (evidence and claim in one
sequence, the first token's state classified) that training is unused, and the first
token's pooler was never trained. :class:`SiameseBertForSequenceClassification` uses it:

- it reads the same inputs as a cross-encoder (``input_ids``, ``attention_mask``,
  ``token_type_ids`` of the evidence-first pair), so tokenisation, evidence selection,
  batching, ONNX / OpenVINO export and serving are unchanged;
- in **one pass** over the pair, a block-diagonal attention mask keeps the evidence
  (segment 0) and the claim (segment 1) from attending to each other, and positions
  restart at the claim: each segment is encoded as if it were alone;
- each segment is mean-pooled (``v`` evidence, ``u`` claim) and a linear layer classifies
  ``[u, v, |u - v|, u * v]``: the softmax classifier Sentence-BERT was trained with on
  NLI (Reimers and Gurevych, 2019).

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

    def pair_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the classifier reads: ``[u, v, |u - v|, u * v]`` (claim ``u``, evidence ``v``)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:  # no segments: the whole input is the evidence
            token_type_ids = torch.zeros_like(input_ids)
        evidence, claim = segment_masks(attention_mask, token_type_ids)
        allowed = block_attention(evidence, claim)
        if self.config._attn_implementation == "eager":  # eager adds the mask to the scores
            blocked = torch.finfo(torch.float32).min
            allowed = torch.zeros(allowed.shape, device=input_ids.device).masked_fill(
                ~allowed, blocked
            )
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=allowed,
            token_type_ids=torch.zeros_like(input_ids),
            position_ids=segment_positions(evidence, claim),
        ).last_hidden_state
        v, u = mean_pool(hidden, evidence), mean_pool(hidden, claim)
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


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
