"""`citeops bench train` on the tiny model: both sides see the same examples and steps."""

from __future__ import annotations

import json

import pytest

from citeops.configs.settings import load_settings


def test_bench_train_compares_the_two_loops(capsys: pytest.CaptureFixture[str]) -> None:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    args = ["bench", "train", "--steps", "2", "--batch-size", "2", "--eval-examples", "4"]
    assert run_cli(app, [*args, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    base, ours = figures["baseline"], figures["ours"]
    assert base["samples"] == ours["samples"] == 4
    assert base["steps"] == ours["steps"] == 2
    assert base["tokens_per_batch"] == 2 * 512  # every pair padded to 512
    assert ours["tokens_per_batch"] < base["tokens_per_batch"]
    assert figures["ratio"] == pytest.approx(ours["samples_per_s"] / base["samples_per_s"])
    assert figures["f1_diff"] == pytest.approx(ours["f1_macro"] - base["f1_macro"])


def test_pad_to_max_dataset_tokenises_on_every_access() -> None:
    from transformers import AutoTokenizer

    from citeops.benchmarks.train import PadToMaxDataset
    from citeops.tasks.data.multivers import Example
    from citeops.tasks.model.base import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return tokenizer(*args, **kwargs)

    dataset = PadToMaxDataset([Example("claim", "evidence text", 2)], counting, 512)
    first, second = dataset[0], dataset[0]
    assert len(calls) == 2
    assert first["input_ids"].shape == (512,)
    assert int(first["labels"]) == 2 and bool((first["input_ids"] == second["input_ids"]).all())
    assert load_settings().model.base_model == "tiny"
