"""``citeops bench train``: our training input pipeline against a pyvers-style loop.

Both sides train the same base model from the same initial weights on the same examples
for the same number of optimiser steps (AdamW, same learning rate and schedule), in one
process and interleaved step by step (so load from other work on the machine hits both
alike), and are then scored on the same fixed evaluation subset:

- **baseline** (pyvers-style): a dataset that tokenises the pair inside ``__getitem__``
  on every access and pads every pair to ``max_length`` (512); fp32.
- **ours**: pairs tokenised once, length-bucketed batches with dynamic padding (the
  functions training uses), bf16 autocast where the CPU has native bf16 (else fp32).
  Tokenisation time counts against our side.

With ``time_to_f1`` it then runs the headline figure, **time to quality**
(:mod:`.time_to_f1`): the training seconds each side needs to reach the same dev macro F1,
and logs both curves to MLflow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from citeops.benchmarks.settings import BenchSettings, load_bench_settings
from citeops.benchmarks.train_sides import (
    SideRunner,
    bench_examples,
    bucketed_batch_iter,
    op_shares,
    pad_to_max_batches,
    recipe_selection,
    score,
)

if TYPE_CHECKING:
    import torch

    from citeops.configs.settings import Settings
    from citeops.tasks.classifier.preprocess import EvidenceSelection
    from citeops.tasks.data.multivers import Example


@dataclass
class LoopFigures:
    """Speed and quality of one side."""

    name: str
    padding: str
    precision: str
    steps: int
    samples: int
    seconds: float
    samples_per_s: float
    tokens_per_batch: float
    f1_macro: float
    accuracy: float


@dataclass(frozen=True)
class SidePlan:
    """One side of the samples/s comparison before it runs: its starting model, how to
    make its batch stream, and how it pads, how long its pairs are, how it selects."""

    model: Any
    batches: Callable[[], Iterable[Any]]
    bf16: bool
    padding: str
    max_length: int
    selection: EvidenceSelection | None = None


def side_report(
    name: str,
    runner: SideRunner,
    plan: SidePlan,
    tokenizer: Any,
    dev: Sequence[Example],
    profile: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """A side's figures after its steps: speed, phases, dev F1 and, with ``profile``, the
    operator shares of one more (profiled, untimed) forward + backward."""
    shares = None
    if profile:
        say(f"profiling one forward + backward of {name}")
        shares = op_shares(runner.model, next(iter(plan.batches())), plan.bf16)
    say(f"scoring {name} on {len(dev)} dev pairs")
    metrics = score(runner.model, tokenizer, dev, plan.max_length, selection=plan.selection)
    figures = asdict(side_figures(name, runner, metrics, plan.padding))
    figures.update(
        head=getattr(runner.model.config, "model_type", "?"),
        max_length=plan.max_length,
        phase_seconds={k: round(v, 3) for k, v in runner.phase_seconds.items()},
    )
    if shares is not None:
        figures["op_shares"] = shares
    return figures


def throughput_optimizer(
    model: torch.nn.Module, learning_rate: float, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The throughput comparison's optimiser, alike on every side: AdamW, 10 % warm-up."""
    from citeops.tasks.train.optim import build_optimizer

    return build_optimizer(model, learning_rate, 0.01, 1.0, 0.1, steps)


def side_runner(
    initial: torch.nn.Module, batches: Iterable[Any], lr: float, steps: int, bf16: bool
) -> SideRunner:
    """A side on its own copy of ``initial``, with its own optimiser over that copy."""
    model = copy.deepcopy(initial)
    return SideRunner(model, batches, throughput_optimizer(model, lr, steps), bf16)


def side_figures(
    name: str, runner: SideRunner, metrics: dict[str, float], padding: str
) -> LoopFigures:
    return LoopFigures(
        name=name,
        padding=padding,
        precision="bf16-autocast" if runner.bf16 else "fp32",
        steps=runner.steps,
        samples=runner.samples,
        seconds=runner.seconds,
        samples_per_s=runner.samples / runner.seconds if runner.seconds else float("nan"),
        tokens_per_batch=runner.tokens / max(runner.steps, 1),
        f1_macro=metrics.get("f1_macro", float("nan")),
        accuracy=metrics.get("accuracy", float("nan")),
    )


def bench_train(
    settings: Settings,
    steps: int = 4,
    batch_size: int = 16,
    max_length: int = 512,
    eval_examples: int = 64,
    dataset: str = "citint",
    with_fp32: bool = False,
    progress: Callable[[str], None] | None = None,
    time_to_f1: bool = True,
    bench: BenchSettings | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    """Train both sides for ``steps`` steps of ``batch_size`` and compare speed and F1;
    with ``time_to_f1``, then race them to the dev macro F1 target (:mod:`.time_to_f1`,
    the baseline padding to ``max_length``) and log that run to MLflow.

    Returns a JSON-able dict with ``baseline``, ``ours`` (the default recipe: ``model.head``
    at ``train.max_length`` with its evidence selection), ``ours_same_length`` (the
    baseline's cross-encoder at ``max_length``, bucketed) and ``ours_fp32`` when asked, each
    with ``phase_seconds`` (fetch, forward, backward, optimizer) and with ``profile`` its
    ``op_shares``; ``ratio`` (ours / baseline samples per second), ``ratio_same_length``
    and ``f1_diff`` (ours - baseline), plus
    with ``time_to_f1`` the keys of :func:`.time_to_f1.bench_time_to_f1` and
    ``mlflow_run_id``. The race's workload and goal come from ``bench`` (default: the
    environment's benchmark settings).
    """
    from citeops.tasks.classifier.base import load_base, set_attention_dropout

    say = progress or (lambda _msg: None)
    # the baseline is pyvers' cross-encoder whatever model.head says; ours uses model.head
    cross = settings.model.model_copy(update={"head": "cross"})
    initial, tokenizer = load_base(cross, seed=settings.train.seed)
    ours = None
    if settings.model.head != "cross":
        ours, _ = load_base(settings.model, seed=settings.train.seed)
    if settings.train.attention_dropout is not None:  # the recipe's, on ours' model only
        ours = ours if ours is not None else copy.deepcopy(initial)
        set_attention_dropout(ours, settings.train.attention_dropout)
    figures = bench_throughput(
        settings,
        initial,
        tokenizer,
        steps,
        batch_size,
        max_length,
        eval_examples,
        dataset,
        with_fp32,
        say,
        recipe_initial=ours,
        profile=profile,
    )
    if time_to_f1:
        from citeops.benchmarks.time_to_f1 import bench_time_to_f1, log_bench_run
        from citeops.flows.tracking import use_mlflow

        bench = bench or load_bench_settings()
        figures.update(
            bench_time_to_f1(settings, initial, tokenizer, batch_size, max_length, say, ours, bench)
        )
        experiment = bench.mlflow_experiment
        figures["mlflow_run_id"] = log_bench_run(use_mlflow(settings), figures, experiment)
        say(f"MLflow run {figures['mlflow_run_id']} ({experiment})")
    return figures


def bench_throughput(
    settings: Settings,
    initial: torch.nn.Module,
    tokenizer: Any,
    steps: int,
    batch_size: int,
    max_length: int,
    eval_examples: int,
    dataset: str,
    with_fp32: bool,
    say: Callable[[str], None],
    recipe_initial: torch.nn.Module | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    """The samples/s comparison: each side ``steps`` steps, interleaved.

    ``initial`` is the baseline's cross-encoder; ``recipe_initial`` the default recipe's
    classifier (``model.head``; None: the cross-encoder too). With ``profile``, one more
    forward + backward per side runs under the PyTorch profiler (not timed) and each side
    gets ``op_shares``: the share of operator time per group (attention, linear, ...)."""
    import torch

    from citeops.tasks.train.fit import cpu_supports_bf16

    seed = settings.train.seed
    train, dev = bench_examples(settings, dataset, steps * batch_size, eval_examples, seed)
    bf16 = cpu_supports_bf16() and not torch.cuda.is_available()
    mult = settings.train.bucket_size_multiplier
    recipe_length = settings.train.max_length
    selection, select = recipe_selection(settings, tokenizer, recipe_length)
    evidence = f"selection {selection.method}" if selection.enabled else "whole"
    plans = {
        "baseline": SidePlan(
            initial,
            lambda: pad_to_max_batches(train, tokenizer, max_length, batch_size, seed),
            False,
            f"pad-to-{max_length}",
            max_length,
        ),
        # the earlier "ours": the same cross-encoder at the same length, bucketed
        "ours_same_length": SidePlan(
            initial,
            lambda: bucketed_batch_iter(train, tokenizer, max_length, batch_size, mult, seed),
            bf16,
            "bucketed-dynamic",
            max_length,
        ),
    }
    recipe = SidePlan(
        recipe_initial if recipe_initial is not None else initial,
        lambda: bucketed_batch_iter(
            train, tokenizer, recipe_length, batch_size, mult, seed, select=select
        ),
        bf16,
        f"bucketed-dynamic, {evidence}",
        recipe_length,
        selection if selection.enabled else None,
    )
    if with_fp32 and bf16:
        plans["ours_fp32"] = replace(recipe, bf16=False)
    plans["ours"] = recipe
    lr = settings.train.learning_rate
    runners = {
        name: side_runner(plan.model, plan.batches(), lr, steps, plan.bf16)
        for name, plan in plans.items()
    }
    say(
        f"{steps} steps of {batch_size} pairs, sides interleaved step by step: "
        + ", ".join(runners)
    )
    torch.manual_seed(0)
    for step in range(steps):
        for side in runners.values():
            side.step()
        say(
            f"step {step + 1}/{steps}: "
            + "  ".join(f"{n} {r.samples / r.seconds:.2f}/s" for n, r in runners.items())
        )
    sides = {
        name: side_report(name, runner, plans[name], tokenizer, dev, profile, say)
        for name, runner in runners.items()
    }
    base, ours = sides["baseline"], sides["ours"]
    return {
        "base_model": settings.model.base_model,
        "dataset": f"{dataset} train ({len(train)} pairs), F1 on {len(dev)} {dataset} dev pairs",
        "batch_size": batch_size,
        "steps": steps,
        "max_length": max_length,
        "threads": torch.get_num_threads(),
        **sides,
        "ratio": ours["samples_per_s"] / base["samples_per_s"],
        "ratio_same_length": sides["ours_same_length"]["samples_per_s"] / base["samples_per_s"],
        "f1_diff": ours["f1_macro"] - base["f1_macro"],
    }
