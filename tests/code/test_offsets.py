"""Class logit offsets tuned on dev and baked into the classifier's output bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citeops.configs.settings import ModelSettings
from citeops.tasks.data.multivers import LABELS, read_split
from citeops.tasks.train.offsets import DevScores, dev_score, offset_metrics, tune_offsets


def _skewed(shift: tuple[float, float, float], n: int = 600, seed: int = 0) -> DevScores:
    """Logits whose gold labels follow ``argmax(logits + shift)``: the model under-rates a
    class by ``shift`` (a prior it learned wrong)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    targets = (logits + np.array(shift)).argmax(axis=1)
    return DevScores(logits, targets, rng.integers(0, 2, size=n), ("scifact", "citint"))


def test_offsets_found_on_a_skewed_dev_set_raise_its_f1() -> None:
    scores = _skewed((0.0, 1.5, -0.5))
    offsets, before, after = tune_offsets(scores)
    assert after > before + 0.05
    assert after == pytest.approx(dev_score(scores, offsets))
    assert offsets[0] == 0.0  # SUPPORT is the reference
    assert offsets[1] > max(0.5, offsets[2])  # NEI, the under-rated class, is raised
    metrics = offset_metrics(scores, offsets, LABELS)
    assert metrics["f1_macro_by_dataset"] == pytest.approx(after)
    assert metrics["f1_NEI"] > offset_metrics(scores, np.zeros(3), LABELS)["f1_NEI"]


def test_a_calibrated_model_keeps_zero_offsets() -> None:
    offsets, before, after = tune_offsets(_skewed((0.0, 0.0, 0.0)))
    assert offsets.tolist() == [0.0, 0.0, 0.0]
    assert after == before == 1.0


def _dev_module(data_dir: Path, head: str):  # noqa: ANN202
    """A tiny model of ``head`` (classifier weights spread, so logits differ between pairs)
    in the training module, with a data module over some SciFact and Citation-Integrity
    dev pairs."""
    import torch

    from citeops.tasks.classifier.base import load_base, output_layer
    from citeops.tasks.train.module import ClaimDataModule, ClaimVerifierModule, OptimConfig

    model, tokenizer = load_base(ModelSettings(base_model="tiny", head=head), seed=1)
    torch.manual_seed(1)
    for layer in model.modules():  # a random BERT's pooled states hardly differ
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=0.3)
    torch.nn.init.normal_(output_layer(model).weight, std=1.0)
    dev = read_split(data_dir, "scifact", "dev")[:40] + read_split(data_dir, "citint", "dev")[:40]
    data = ClaimDataModule(tokenizer, dev[:2], dev, 64, 8, 16)
    data.setup("fit")
    return ClaimVerifierModule(model, OptimConfig(), groups=data.groups), data, tokenizer


@pytest.mark.parametrize("head", ["siamese", "cross"])
def test_baked_offsets_are_in_the_saved_model_logits(
    data_dir: Path, tmp_path: Path, head: str
) -> None:
    from citeops.tasks.classifier.base import add_logit_offsets, load_base
    from citeops.tasks.train.module import ClaimVerifierModule, OptimConfig
    from citeops.tasks.train.offsets import collect_dev_scores

    module, data, tokenizer = _dev_module(data_dir, head)
    # every class predicted somewhere: centre each class's logits through the bias
    add_logit_offsets(module.model, (-collect_dev_scores(module, data).logits.mean(0)).tolist())
    old = collect_dev_scores(module, data)
    assert old.logits.std(axis=0).min() > 0.05  # pairs get different logits
    # the gold labels follow the logits with NEI raised by what flips about half the pairs
    gap = float(np.median(old.logits.max(axis=1) - old.logits[:, 1]))
    shift = np.array([0.0, float(np.clip(gap, 0.2, 1.8)), 0.0])
    skewed = DevScores(old.logits, (old.logits + shift).argmax(axis=1), old.groups, old.names)
    offsets, before, after = tune_offsets(skewed)
    assert after > before
    add_logit_offsets(module.model, offsets.tolist())
    module.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded, _ = load_base(ModelSettings(base_model=str(tmp_path), head=head))
    new = collect_dev_scores(ClaimVerifierModule(reloaded, OptimConfig()), data)
    assert new.logits == pytest.approx(old.logits + offsets, abs=1e-4)
    assert dev_score(skewed, np.zeros(3)) == pytest.approx(before)
    assert dev_score(DevScores(new.logits, skewed.targets, old.groups, old.names), 0) == after


def test_offsets_need_a_biased_output_layer() -> None:
    from citeops.tasks.classifier.base import BaseModelError, add_logit_offsets, load_base

    model, _ = load_base(ModelSettings(base_model="tiny", head="siamese"))
    model.classifier.bias = None
    with pytest.raises(BaseModelError, match="no linear output layer"):
        add_logit_offsets(model, [0.0, 1.0, 0.0])
