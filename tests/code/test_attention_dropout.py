"""``train.attention_dropout``: only the attention probabilities' dropout changes, on the
cross-encoder and the siamese head, and training applies it."""

from __future__ import annotations

import pytest
import torch

from citeops.configs.settings import load_settings
from citeops.tasks.classifier.base import load_base, set_attention_dropout


def dropout_rates(model: torch.nn.Module) -> tuple[set[float], set[float]]:
    """The rates of the attention layers' dropouts and of every other dropout."""
    attention, other = set(), set()
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.Dropout):
                inside_attention = "Attention" in type(module).__name__ and name == "dropout"
                (attention if inside_attention else other).add(child.p)
    return attention, other


@pytest.mark.parametrize("head", ["cross", "siamese"])
def test_only_the_attention_dropout_changes(head: str) -> None:
    settings = load_settings()
    model, _ = load_base(settings.model.model_copy(update={"head": head}), seed=0)
    before_attention, before_other = dropout_rates(model)
    assert before_attention and before_attention != {0.0}

    changed = set_attention_dropout(model, 0.0)

    attention, other = dropout_rates(model)
    assert changed == model.config.num_hidden_layers
    assert attention == {0.0} and other == before_other
    assert model.config.attention_probs_dropout_prob == 0.0


def test_training_applies_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from citeops.tasks.data.multivers import Example
    from citeops.tasks.train.fit import build_module

    monkeypatch.setenv("CITEOPS_TRAIN__ATTENTION_DROPOUT", "0")
    examples = [Example("claim", "some evidence text", i % 3) for i in range(6)]
    module, _datamodule, _tokenizer = build_module(load_settings(), examples, examples)
    attention, _ = dropout_rates(module.model)
    assert attention == {0.0}
    assert module.model.training
