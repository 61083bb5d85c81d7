"""Plain parts of the classifier: pair order, bucketing, padding, metrics, optimiser groups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from citeops.tasks.classifier.stats import classification_metrics, majority_baseline
from citeops.tasks.train.batching import (
    EncodedPair,
    bucketed_batches,
    class_weights,
    collate_padded,
    encode_examples,
    tokenize_pairs,
)
from citeops.tasks.train.optim import layer_depth, parameter_groups, warmup_linear_decay


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from citeops.tasks.classifier.base import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def test_pairs_are_tokenised_evidence_first(tokenizer) -> None:
    batch = tokenize_pairs(tokenizer, ["zebras fly"], ["the moon is cheese"], max_length=64)
    text = tokenizer.decode(batch["input_ids"][0])
    assert text.index("moon") < text.index("zebras")
    types = batch["token_type_ids"][0]
    ids = batch["input_ids"][0]
    moon = tokenizer.convert_tokens_to_ids("moon")
    assert types[ids.index(moon)] == 0  # evidence is the first segment
    assert types[-2] == 1  # the claim's last token, before [SEP], is in the second


def test_long_claim_is_truncated_longest_first(tokenizer) -> None:
    from citeops.tasks.data.multivers import Example

    long_claim = " ".join(["word"] * 400)
    pairs = encode_examples(tokenizer, [Example(long_claim, "short evidence", 0)], max_length=64)
    assert len(pairs[0]) == 64
    assert "evidence" in tokenizer.decode(pairs[0].input_ids)


def test_bucketed_batches_cover_every_example_once() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=203).tolist()
    batches = bucketed_batches(lengths, batch_size=8, bucket_size_multiplier=4, seed=1)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(203))
    assert all(1 <= len(b) <= 8 for b in batches)
    # each batch holds similar lengths: spread far below the global spread
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < (max(lengths) - min(lengths)) / 4
    # shuffled buckets, not one global sort; another seed gives another order
    firsts = [lengths[b[0]] for b in batches]
    assert firsts != sorted(firsts)
    assert bucketed_batches(lengths, 8, 4, seed=2) != batches


def test_collate_pads_to_the_longest_in_the_batch() -> None:
    pairs = [EncodedPair([101, 5, 102], [0, 0, 0], 0), EncodedPair([101, 102], [0, 0], 2)]
    batch = collate_padded(pairs, pad_token_id=0)
    assert batch["input_ids"].shape == (2, 3)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [0, 2]


def test_metrics_on_a_known_example() -> None:
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]]
    )
    targets = [0, 1, 2, 1, 0]  # predictions 0, 1, 2, 0, 2
    m = classification_metrics(probs, targets)
    assert m["accuracy"] == pytest.approx(3 / 5)
    f1_support = 2 * 0.5 * 0.5 / (0.5 + 0.5)  # precision 1/2, recall 1/2
    f1_nei = 2 * 1.0 * 0.5 / 1.5  # precision 1, recall 1/2
    f1_refute = 2 * 0.5 * 1.0 / 1.5  # precision 1/2, recall 1
    assert m["f1_SUPPORT"] == pytest.approx(f1_support)
    assert m["f1_NEI"] == pytest.approx(f1_nei)
    assert m["f1_REFUTE"] == pytest.approx(f1_refute)
    assert m["f1_macro"] == pytest.approx((f1_support + f1_nei + f1_refute) / 3)
    assert m["f1_micro"] == pytest.approx(3 / 5)
    from sklearn.metrics import roc_auc_score

    per_class = [roc_auc_score(np.array(targets) == c, probs[:, c]) for c in range(3)]
    assert m["auroc_macro"] == pytest.approx(np.mean(per_class), abs=1e-6)
    assert m["auroc_weighted"] == pytest.approx(np.average(per_class, weights=[2, 2, 1]), abs=1e-6)


def test_auroc_skips_a_class_absent_from_targets() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    m = classification_metrics(probs, [0, 1, 1])
    assert "auroc_REFUTE" not in m
    assert m["auroc_macro"] == pytest.approx(1.0)


def test_majority_baseline_predicts_the_training_majority() -> None:
    m = majority_baseline([1, 1, 0], [1, 0, 1, 2])
    assert m["majority_label"] == "NEI"
    assert m["accuracy"] == pytest.approx(0.5)


def test_class_weights_are_inverse_frequency() -> None:
    weights = class_weights([0, 0, 0, 1, 2, 2], 3)
    assert weights == pytest.approx([6 / 9, 6 / 3, 6 / 6])


def test_layer_wise_learning_rates() -> None:
    import torch

    from citeops.configs.settings import ModelSettings
    from citeops.tasks.classifier.base import build_tiny

    model, _ = build_tiny(ModelSettings(tiny_layers=2), seed=0)
    assert layer_depth("bert.encoder.layer.1.attention.self.query.weight", 2) == 1
    assert layer_depth("bert.embeddings.word_embeddings.weight", 2) == 3
    assert layer_depth("classifier.weight", 2) == 0
    groups = parameter_groups(model, learning_rate=1e-3, weight_decay=0.01, layer_lr_decay=0.5)
    rates = {g["lr"] for g in groups}
    assert rates == {1e-3, 5e-4, 2.5e-4, 1.25e-4}
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])
    assert all(g["weight_decay"] == 0.0 for g in groups if g["params"][0].dim() == 1)
    assert isinstance(groups[0]["params"][0], torch.nn.Parameter)
    head_rate = parameter_groups(model, 1e-3, 0.01, 0.5, head_learning_rate=2e-2)
    assert {g["lr"] for g in head_rate} == {2e-2, 5e-4, 2.5e-4, 1.25e-4}
    head = [g for g in head_rate if g["lr"] == 2e-2]
    named = {id(p): n for n, p in model.named_parameters()}
    assert {named[id(p)] for g in head for p in g["params"]} >= {"classifier.weight"}


def test_warmup_then_linear_decay() -> None:
    factor = warmup_linear_decay(warmup_steps=4, total_steps=14)
    assert factor(0) == pytest.approx(0.25)
    assert factor(3) == pytest.approx(1.0)
    assert factor(9) == pytest.approx(0.5)
    assert factor(14) == 0.0
    assert not math.isnan(warmup_linear_decay(0, 0)(0))


def test_per_dataset_f1_and_their_mean() -> None:
    from citeops.tasks.classifier.stats import per_group_f1

    probs = np.eye(3)[[0, 1, 2, 0, 0, 0]]  # predictions 0 1 2 0 0 0
    targets = [0, 1, 2, 1, 2, 0]
    groups = [0, 0, 0, 1, 1, 1]
    out = per_group_f1(probs, targets, groups, ("scifact", "citint"), ("S", "N", "R"))
    assert out["f1_macro_scifact"] == pytest.approx(1.0)
    assert out["f1_macro_citint"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert out["f1_macro_by_dataset"] == pytest.approx((1.0 + 0.5 / 3) / 2)
    assert per_group_f1(probs, targets, None, ("a",), ("S", "N", "R")) == {}


def test_plain_progress_line_when_stderr_is_not_a_terminal(caplog) -> None:
    from types import SimpleNamespace

    import torch

    from citeops.tasks.train.module import StepProgress

    caplog.set_level("INFO", logger="citeops.tasks.train.module")
    callback = StepProgress(interval_seconds=0.0)
    trainer = SimpleNamespace(current_epoch=1, num_training_batches=4)
    callback.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    batch = {"labels": torch.zeros(8, dtype=torch.long)}
    callback.on_train_batch_end(trainer, None, None, batch, 0)  # type: ignore[arg-type]
    err = caplog.text  # logged: the entry point's handler shows it (terminal, Prefect UI)
    assert "epoch 1  batch 1/4" in err
    assert "examples/s" in err and "min left in the epoch" in err
    caplog.clear()
    quiet = StepProgress(interval_seconds=3600.0)
    quiet.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    quiet.on_train_batch_end(trainer, None, None, batch, 0)  # type: ignore[arg-type]
    assert caplog.text == ""  # nothing before the interval has passed
