"""`citeops bench train` on the tiny model: both sides see the same examples and steps, and
race to the same dev macro F1 with the clock paused while they are scored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from citeops.benchmarks.settings import load_bench_settings
from citeops.configs.settings import load_settings

# a race of seconds on the tiny model: 16 SciFact pairs, batches of 4, one epoch (4 steps)
QUICK_RACE = [
    "--steps",
    "1",
    "--batch-size",
    "4",
    "--eval-examples",
    "4",
    "--train-examples",
    "16",
    "--dev-examples",
    "8",
]


def bench_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    assert run_cli(app, ["bench", "train", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_train_compares_the_two_loops(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITEOPS_MODEL__HEAD", "siamese")  # the default recipe's head
    args = ["--steps", "2", "--batch-size", "2", "--eval-examples", "4", "--no-time-to-f1"]
    figures = bench_json(capsys, args)
    assert "time_to_f1_ratio" not in figures and "mlflow_run_id" not in figures
    base, ours = figures["baseline"], figures["ours"]
    assert base["samples"] == ours["samples"] == 4
    assert base["steps"] == ours["steps"] == 2
    assert base["tokens_per_batch"] == 2 * 512  # every pair padded to 512
    assert ours["tokens_per_batch"] < base["tokens_per_batch"]
    assert figures["ratio"] == pytest.approx(ours["samples_per_s"] / base["samples_per_s"])
    assert figures["f1_diff"] == pytest.approx(ours["f1_macro"] - base["f1_macro"])
    # ours is the default recipe: its head, its length, its evidence selection
    settings = load_settings()
    assert ours["max_length"] == settings.train.max_length
    assert base["head"] == "bert" and ours["head"] == "citeops-siamese-bert"
    assert "selection" in ours["padding"]
    same = figures["ours_same_length"]
    assert same["head"] == "bert" and same["max_length"] == base["max_length"] == 512
    assert figures["ratio_same_length"] == pytest.approx(
        same["samples_per_s"] / base["samples_per_s"]
    )
    for side in (base, same, ours):  # the phases account for the whole step
        assert set(side["phase_seconds"]) == {"fetch", "forward", "backward", "optimizer"}
        assert sum(side["phase_seconds"].values()) == pytest.approx(side["seconds"], abs=0.01)
        assert "op_shares" not in side


def test_bench_train_profile_splits_operator_time(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--steps", "1", "--batch-size", "2", "--eval-examples", "2", "--no-time-to-f1"]
    figures = bench_json(capsys, [*args, "--profile"])
    for name in ("baseline", "ours_same_length", "ours"):
        shares = figures[name]["op_shares"]
        assert set(shares) == {"attention", "linear", "embedding", "other"}
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
        assert shares["attention"] > 0 and shares["linear"] > 0
    from citeops.flows.cli.bench import format_train_side

    line = format_train_side("ours", figures["ours"])
    assert "samples/s" in line and "forward" in line and "ops: attention" in line


def test_pad_to_max_dataset_tokenises_on_every_access() -> None:
    from transformers import AutoTokenizer

    from citeops.benchmarks.train_sides import PadToMaxDataset
    from citeops.tasks.classifier.base import minilm_path
    from citeops.tasks.data.multivers import Example

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


def test_target_zero_is_reached_at_the_first_scoring_and_logged_to_mlflow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow

    figures = bench_json(capsys, [*QUICK_RACE, "--eval-every", "2", "--target-f1", "0"])
    assert figures["ratio"] > 0  # the samples/s comparison is still there
    race = figures["time_to_f1"]
    base, ours = race["baseline"], race["ours"]
    for side in (base, ours):
        assert side["reached"] and side["stopped"] == "target"
        assert [p["steps"] for p in side["curve"]] == [2]
        assert side["seconds_to_target"] == side["curve"][0]["seconds"] == side["train_seconds"]
    assert base["padding"] == "pad-to-512" and ours["padding"] == "bucketed-dynamic"
    assert ours["max_length"] == load_settings().train.max_length
    assert figures["baseline_reached"] and figures["ours_reached"]
    assert not figures["time_to_f1_ratio_is_lower_bound"]
    assert figures["time_to_f1_ratio"] == pytest.approx(
        base["seconds_to_target"] / ours["seconds_to_target"]
    )

    settings = load_settings()
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    run = client.get_run(figures["mlflow_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == load_bench_settings().mlflow_experiment == "citeops-bench"
    for name, side in (("baseline", base), ("ours", ours)):
        history = client.get_metric_history(run.info.run_id, f"dev_f1_macro_{name}")
        assert [(h.step, h.value) for h in history] == [
            (round(p["seconds"] * 1000), pytest.approx(p["f1_macro"])) for p in side["curve"]
        ]
    assert run.data.params["target_f1"] == "0.0"
    assert "bench_train.json" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_unreachable_target_gives_no_ratio_and_the_budget_stops_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [*QUICK_RACE, "--eval-every", "3", "--target-f1", "1.0", "--budget-seconds", "0.001"]
    figures = bench_json(capsys, args)
    assert figures["time_to_f1_ratio"] is None
    assert figures["time_to_f1_ratio_is_lower_bound"] is False
    assert not figures["baseline_reached"] and not figures["ours_reached"]
    assert "ours did not reach" in figures["time_to_f1_note"]
    for side in (figures["time_to_f1"]["baseline"], figures["time_to_f1"]["ours"]):
        assert side["stopped"] == "budget" and side["seconds_to_target"] is None
        assert [p["steps"] for p in side["curve"]] == [1]  # scored once more where it stopped


def test_baseline_missing_the_target_makes_a_lower_bound_and_scoring_is_off_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from citeops.benchmarks import time_to_f1
    from citeops.tasks.classifier.base import load_base

    pause = 0.3
    scorings: list[float] = []

    def slow_score(*args: Any, selection: Any = None, **kwargs: Any) -> dict[str, float]:
        time.sleep(pause)
        scorings.append(pause)
        return {"f1_macro": 0.9 if selection is not None else 0.1}  # only ours passes one

    monkeypatch.setattr(time_to_f1, "score", slow_score)
    settings = load_settings()
    bench = load_bench_settings(
        train_quality_examples=16, train_dev_examples=8, train_eval_every=1, train_target_f1=0.5
    )
    model, tokenizer = load_base(settings.model, seed=0)
    start = time.perf_counter()
    figures = time_to_f1.bench_time_to_f1(
        settings, model, tokenizer, 4, 512, lambda _m: None, bench=bench
    )
    wall = time.perf_counter() - start

    base, ours = figures["time_to_f1"]["baseline"], figures["time_to_f1"]["ours"]
    assert ours["reached"] and ours["steps_to_target"] == 1
    assert not base["reached"] and base["stopped"] == "schedule_end"
    assert [p["steps"] for p in base["curve"]] == [1, 2, 3, 4]
    seconds = [p["seconds"] for p in base["curve"]]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)
    assert figures["time_to_f1_ratio_is_lower_bound"] is True
    assert figures["time_to_f1_ratio"] == pytest.approx(
        base["train_seconds"] / ours["seconds_to_target"]
    )
    # the sleeping scorer ran 5 times; had the clock counted it, the training seconds
    # would hold it a second time and exceed what the call's wall time leaves
    assert len(scorings) == 5
    assert base["scoring_seconds"] + ours["scoring_seconds"] >= sum(scorings)
    assert base["train_seconds"] + ours["train_seconds"] <= wall - sum(scorings)


def test_a_siamese_recipe_races_its_own_head_against_the_cross_encoder_baseline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.tasks.classifier.siamese import MODEL_TYPE

    monkeypatch.setenv("CITEOPS_MODEL__HEAD", "siamese")
    monkeypatch.setenv("CITEOPS_TRAIN__HEAD_WARM_START", "true")
    figures = bench_json(capsys, [*QUICK_RACE, "--eval-every", "2", "--target-f1", "0"])
    base, ours = figures["time_to_f1"]["baseline"], figures["time_to_f1"]["ours"]
    assert ours["head"] == MODEL_TYPE
    assert ours["head_warm_start_seconds"] > 0
    # the head's fit is on ours' clock: its first scoring comes after it
    assert ours["curve"][0]["seconds"] > ours["head_warm_start_seconds"]
    assert base["padding"] == "pad-to-512" and "head" not in base
