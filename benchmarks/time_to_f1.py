"""Time to quality, the headline figure of ``citeops bench train``.

Both sides start from the same pretrained encoder and train on the same shuffled training
pairs (``bench.train_quality_dataset``, SciFact by default: its rationale sentences often
lie past what truncation keeps, so evidence selection matters there). Each is scored every
``bench.train_eval_every`` optimiser steps on the same fixed dev subset through its own
inference pipeline; the figure is the **training** wall time (batch fetch, forward,
backward, optimiser step; the clock is paused while the dev set is scored) until the
first scoring at or above ``bench.train_target_f1`` dev macro F1. The sides take their
steps in turn, in one process, so a load change on the shared machine hits both alike.
A side stops at the target, when its training time reaches ``bench.train_budget_seconds``
(scored once more there), or at the end of its learning-rate schedule (``train.epochs``
epochs), whichever comes first.

- **baseline** (pyvers-style): tokenise in ``__getitem__``, pad every pair to 512, whole
  evidence (``longest_first`` truncation), fp32, pyvers' schedule: AdamW decaying linearly
  to 0 over the planned steps, no warm-up, unweighted loss, at our learning rate by default
  (``bench.train_baseline_learning_rate``; pyvers' own is 2e-5), so that the rate is not
  what the ratio measures.
- **ours**: what ``citeops train`` does: evidence selection (``model.evidence_selection``),
  tokenise once, length-bucketed batches with dynamic padding, bf16 autocast where the CPU
  has native bf16, at ``train.max_length``, with the training's classifier head
  (``model.head``; the baseline is always the cross-encoder), its optimiser (learning
  rates, layer-wise decay, warm-up, weight decay), class-weighted loss and rationale
  augmentation when training uses them; with ``train.head_warm_start`` the head's fit on
  the frozen features runs first and its seconds count on ours' clock.

``time_to_f1_ratio`` = baseline seconds / ours seconds. When the baseline misses the
target it is a lower bound (the baseline's training seconds / ours); when ours misses it,
there is no ratio.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from citeops.benchmarks.settings import BenchSettings, load_bench_settings
from citeops.benchmarks.train_sides import (
    SideRunner,
    bench_examples,
    bucketed_batch_iter,
    pad_to_max_batches,
    recipe_selection,
    score,
)

if TYPE_CHECKING:
    import torch

    from citeops.configs.settings import Settings, TrainSettings
    from citeops.tasks.data.multivers import Example
    from mlflow import MlflowClient

BENCH_JSON = "bench_train.json"  # the figures, as an artifact of the MLflow run


@dataclass(frozen=True)
class CurvePoint:
    """One dev scoring: training seconds, optimiser steps and pairs seen so far."""

    seconds: float
    steps: int
    samples: int
    f1_macro: float


@dataclass(frozen=True)
class RaceRules:
    """When a side is scored and when it stops."""

    target_f1: float
    budget_seconds: float
    eval_every: int


@dataclass
class QualitySide:
    """One side of the race: its runner, its own dev scoring and its curve."""

    name: str
    runner: SideRunner
    evaluate: Callable[[], float]
    planned_steps: int
    pipeline: dict[str, Any]
    curve: list[CurvePoint] = field(default_factory=list)
    stopped: str | None = None  # target | budget | schedule_end
    scoring_seconds: float = 0.0

    @property
    def reached(self) -> bool:
        return self.stopped == "target"

    def advance(self, rules: RaceRules) -> None:
        """One timed optimiser step; then, when due, an untimed scoring and the stop rule."""
        runner = self.runner
        runner.step()
        out_of_time = runner.seconds >= rules.budget_seconds
        schedule_end = runner.steps >= self.planned_steps
        if runner.steps % rules.eval_every == 0 or out_of_time or schedule_end:
            if self.score() >= rules.target_f1:
                self.stopped = "target"
                return
        if out_of_time:
            self.stopped = "budget"
        elif schedule_end:
            self.stopped = "schedule_end"

    def score(self) -> float:
        """Dev macro F1 now, recorded on the curve; its time is kept off the clock."""
        start = time.perf_counter()
        f1 = self.evaluate()
        self.runner.model.train()
        self.scoring_seconds += time.perf_counter() - start
        r = self.runner
        self.curve.append(CurvePoint(r.seconds, r.steps, r.samples, f1))
        return f1

    def figures(self) -> dict[str, Any]:
        """The side's JSON: pipeline, stop reason, time to target and the curve."""
        r = self.runner
        hit = self.curve[-1] if self.reached else None
        return {
            **self.pipeline,
            "planned_steps": self.planned_steps,
            "reached": self.reached,
            "seconds_to_target": hit.seconds if hit else None,
            "steps_to_target": hit.steps if hit else None,
            "samples_to_target": hit.samples if hit else None,
            "stopped": self.stopped,
            "train_seconds": r.seconds,
            "steps": r.steps,
            "samples": r.samples,
            "samples_per_s": r.samples / r.seconds if r.seconds else None,
            "scoring_seconds": self.scoring_seconds,
            "best_f1_macro": max((p.f1_macro for p in self.curve), default=None),
            "curve": [asdict(p) for p in self.curve],
        }


def planned_steps(train_pairs: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of ``epochs`` epochs (the schedule both sides plan for)."""
    return epochs * math.ceil(train_pairs / batch_size)


@dataclass(frozen=True)
class RaceInputs:
    """What both sides share: the initial weights, tokenizer, pairs and batch size."""

    initial: torch.nn.Module
    tokenizer: Any
    train: Sequence[Example]
    dev: Sequence[Example]
    batch_size: int
    ours_initial: torch.nn.Module | None = None  # ours' classifier (``model.head``), if other


def baseline_side(
    settings: Settings, race: RaceInputs, max_length: int, bench: BenchSettings
) -> QualitySide:
    """The pyvers-style side (see the module docstring), padding to ``max_length``, at
    ``bench.train_baseline_learning_rate`` (else ours)."""
    import torch

    from citeops.tasks.train.optim import warmup_linear_decay

    tokenizer, train, dev, batch_size = race.tokenizer, race.train, race.dev, race.batch_size
    epochs, seed, lr = (
        settings.train.epochs,
        settings.train.seed,
        bench.train_baseline_learning_rate or settings.train.learning_rate,
    )
    steps = planned_steps(len(train), batch_size, epochs)
    model = copy.deepcopy(race.initial)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-8, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(0, steps))
    loader = pad_to_max_batches(train, tokenizer, max_length, batch_size, seed)
    batches = itertools.chain.from_iterable(itertools.repeat(loader, epochs))
    runner = SideRunner(model, batches, (optimizer, scheduler), bf16=False)
    eval_batch = settings.train.eval_batch_size
    return QualitySide(
        "baseline",
        runner,
        lambda: score(model, tokenizer, dev, max_length, batch_size=eval_batch)["f1_macro"],
        steps,
        {
            "padding": f"pad-to-{max_length}",
            "precision": "fp32",
            "max_length": max_length,
            "evidence": "whole (longest_first truncation)",
            "learning_rate": lr,
            "schedule": "AdamW, linear decay to 0 over the planned steps, no warm-up",
            "class_weighted_loss": False,
        },
    )


def ours_side(settings: Settings, race: RaceInputs, bf16: bool) -> QualitySide:
    """Our training pipeline, with the training's own functions and settings (rationale
    augmentation included: it is part of what ``citeops train`` fits on)."""
    from citeops.tasks.data.augment import augment
    from citeops.tasks.data.multivers import LABELS
    from citeops.tasks.train.batching import class_weights
    from citeops.tasks.train.optim import build_optimizer

    tokenizer, dev, batch_size = race.tokenizer, race.dev, race.batch_size
    cfg = settings.train
    extra = augment(race.train, cfg.augment_rationale_only, cfg.augment_rationale_removed, cfg.seed)
    train = [*race.train, *extra]
    selection, select = recipe_selection(settings, tokenizer, cfg.max_length)
    steps = planned_steps(len(train), batch_size, cfg.epochs)
    model = copy.deepcopy(race.ours_initial or race.initial)
    warm_seconds = (
        warm_start(model, tokenizer, train, cfg.max_length, select, cfg, bf16)
        if cfg.head_warm_start
        else 0.0
    )
    optimizer = build_optimizer(
        model,
        cfg.learning_rate,
        cfg.weight_decay,
        cfg.layer_lr_decay,
        cfg.warmup_ratio,
        steps,
        cfg.head_learning_rate,
    )
    batches = bucketed_batch_iter(
        train,
        tokenizer,
        cfg.max_length,
        batch_size,
        cfg.bucket_size_multiplier,
        cfg.seed,
        select=select,
        epochs=cfg.epochs,
    )
    weights = (
        class_weights([ex.label for ex in train], len(LABELS)) if cfg.class_weighted_loss else None
    )
    runner = SideRunner(model, batches, optimizer, bf16=bf16, class_weights=weights)
    runner.seconds = warm_seconds  # fitting the head is training time
    return QualitySide(
        "ours",
        runner,
        lambda: score(
            model,
            tokenizer,
            dev,
            cfg.max_length,
            selection=selection,
            batch_size=cfg.eval_batch_size,
        )["f1_macro"],
        steps,
        {
            "padding": "bucketed-dynamic",
            "precision": "bf16-autocast" if bf16 else "fp32",
            "max_length": cfg.max_length,
            "evidence": f"selection {selection.to_meta()}" if selection.enabled else "whole",
            "learning_rate": cfg.learning_rate,
            "schedule": (
                f"AdamW, layer-wise decay {cfg.layer_lr_decay}, warm-up {cfg.warmup_ratio} "
                "then linear decay to 0 over the planned steps"
            ),
            "class_weighted_loss": weights is not None,
            "augmented_examples": len(extra),
            "head": getattr(model.config, "model_type", ""),
            "head_warm_start_seconds": round(warm_seconds, 2),
        },
    )


def warm_start(
    model: torch.nn.Module,
    tokenizer: Any,
    train: Sequence[Example],
    max_length: int,
    select: Callable[[Sequence[str], Sequence[str]], list[str]] | None,
    cfg: TrainSettings,
    bf16: bool,
) -> float:
    """Seconds to fit a siamese head on the frozen features of ``train`` (the training's
    ``train.head_warm_start``); 0 for another head."""
    from citeops.tasks.classifier.siamese import SiameseBertForSequenceClassification
    from citeops.tasks.train.batching import encode_examples
    from citeops.tasks.train.warm_start import fit_head_on_pairs

    if not isinstance(model, SiameseBertForSequenceClassification):
        return 0.0
    start = time.perf_counter()
    pairs = encode_examples(tokenizer, train, max_length, select=select)
    pad = tokenizer.pad_token_id or 0
    fit_head_on_pairs(model, pairs, pad, cfg.eval_batch_size, cfg.class_weighted_loss, bf16)
    model.train()
    return time.perf_counter() - start


def race(sides: Iterable[QualitySide], rules: RaceRules, say: Callable[[str], None]) -> None:
    """Step the sides in turn until each has stopped (see :class:`QualitySide`)."""
    import torch

    running = list(sides)
    torch.manual_seed(0)
    while running:
        for side in list(running):
            scored = len(side.curve)
            side.advance(rules)
            if len(side.curve) > scored:
                say(progress_line(side, rules))
            if side.stopped:
                running.remove(side)


def progress_line(side: QualitySide, rules: RaceRules) -> str:
    """The stderr line after a scoring: steps, training seconds, dev F1, stop reason."""
    point = side.curve[-1]
    line = (
        f"{side.name:8s} step {point.steps:4d}  {point.seconds:7.1f} s training  "
        f"dev macro F1 {point.f1_macro:.3f} (target {rules.target_f1:.2f})"
    )
    return line + (f"  -> stopped: {side.stopped}" if side.stopped else "")


def verdict(base: QualitySide, ours: QualitySide) -> dict[str, Any]:
    """``time_to_f1_ratio`` and whether it is exact, a lower bound, or absent (with why)."""
    if not ours.reached:
        return {
            "time_to_f1_ratio": None,
            "time_to_f1_ratio_is_lower_bound": False,
            "time_to_f1_note": f"ours did not reach the target ({ours.stopped}): no ratio",
        }
    ours_s = ours.curve[-1].seconds
    if base.reached:
        return {
            "time_to_f1_ratio": base.curve[-1].seconds / ours_s,
            "time_to_f1_ratio_is_lower_bound": False,
            "time_to_f1_note": "both sides reached the target",
        }
    return {
        "time_to_f1_ratio": base.runner.seconds / ours_s,
        "time_to_f1_ratio_is_lower_bound": True,
        "time_to_f1_note": (
            f"the baseline did not reach the target in {base.runner.seconds:.1f} s of "
            f"training ({base.stopped}): the ratio is a lower bound"
        ),
    }


def bench_time_to_f1(
    settings: Settings,
    initial: torch.nn.Module,
    tokenizer: Any,
    batch_size: int,
    baseline_max_length: int,
    say: Callable[[str], None],
    ours_initial: torch.nn.Module | None = None,
    bench: BenchSettings | None = None,
) -> dict[str, Any]:
    """Race both sides from ``initial`` to ``bench.train_target_f1`` (module docstring);
    ours starts from ``ours_initial`` instead when ``model.head`` gives it another head.
    ``bench`` defaults to the environment's benchmark settings.

    Returns the keys ``time_to_f1`` (set-up and both sides, curves included),
    ``time_to_f1_ratio``, ``time_to_f1_ratio_is_lower_bound``, ``time_to_f1_note``,
    ``baseline_reached``, ``ours_reached`` and ``target_f1``.
    """
    import torch

    from citeops.tasks.train.fit import cpu_supports_bf16

    bench = bench or load_bench_settings()
    dataset = bench.train_quality_dataset
    train, dev = bench_examples(
        settings,
        dataset,
        bench.train_quality_examples,
        bench.train_dev_examples,
        settings.train.seed,
    )
    rules = RaceRules(bench.train_target_f1, bench.train_budget_seconds, bench.train_eval_every)
    bf16 = cpu_supports_bf16() and not torch.cuda.is_available()
    inputs = RaceInputs(initial, tokenizer, train, dev, batch_size, ours_initial)
    base = baseline_side(settings, inputs, baseline_max_length, bench)
    ours = ours_side(settings, inputs, bf16)
    say(
        f"time to dev macro F1 {rules.target_f1:.2f}: {len(train)} {dataset} training pairs, "
        f"{len(dev)} dev pairs scored every {rules.eval_every} steps, budget "
        f"{rules.budget_seconds:.0f} s of training per side"
    )
    race([base, ours], rules, say)
    return {
        "time_to_f1": {
            "dataset": dataset,
            "train_examples": len(train),
            "dev_examples": len(dev),
            "target_f1": rules.target_f1,
            "budget_seconds": rules.budget_seconds,
            "eval_every": rules.eval_every,
            "batch_size": batch_size,
            "epochs": settings.train.epochs,
            "clock": "training steps only (batch fetch, forward, backward, optimiser step)",
            "baseline": base.figures(),
            "ours": ours.figures(),
        },
        **verdict(base, ours),
        "baseline_reached": base.reached,
        "ours_reached": ours.reached,
        "target_f1": rules.target_f1,
    }


def format_time_to_f1(figures: dict[str, Any]) -> str:
    """The time-to-quality part of ``bench train``'s summary."""
    q = figures["time_to_f1"]
    lines = [
        f"time to dev macro F1 {q['target_f1']:.2f} on {q['dev_examples']} {q['dataset']} dev "
        f"pairs ({q['train_examples']} training pairs, scored every {q['eval_every']} steps, "
        f"clock paused while scoring, budget {q['budget_seconds']:.0f} s per side)"
    ]
    for name in ("baseline", "ours"):
        s = q[name]
        reached = (
            f"reached in {s['seconds_to_target']:.1f} s ({s['steps_to_target']} steps)"
            if s["reached"]
            else f"not reached in {s['train_seconds']:.1f} s ({s['stopped']})"
        )
        lines.append(
            f"{name:10s} {s['padding']:17s} {s['precision']:13s} length {s['max_length']:4d}  "
            f"{reached}  best F1 {s['best_f1_macro']:.3f}"
        )
    ratio = figures["time_to_f1_ratio"]
    if ratio is None:
        lines.append(f"time-to-F1 ratio: none ({figures['time_to_f1_note']})")
    else:
        bound = ">= " if figures["time_to_f1_ratio_is_lower_bound"] else ""
        lines.append(f"time-to-F1 ratio {bound}{ratio:.2f}x  ({figures['time_to_f1_note']})")
    lines.append(f"MLflow run {figures['mlflow_run_id']}")
    return "\n".join(lines)


def log_bench_run(settings: Settings, figures: dict[str, Any], experiment: str) -> str:
    """One MLflow run in ``experiment`` (``bench.mlflow_experiment``): parameters, both
    dev-F1 curves (``dev_f1_macro_<side>``, step = training milliseconds), the ratios, and
    ``figures`` as the JSON artifact. Returns the run id."""
    import mlflow
    from citeops.tasks.tracking import ensure_experiment, mlflow_client, require_fluent_tracking

    quality = figures["time_to_f1"]
    require_fluent_tracking(settings)
    experiment_id = ensure_experiment(settings, experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name="bench-train") as run:
        mlflow.set_tag("citeops.kind", "benchmark")
        mlflow.log_params(bench_params(settings, quality))
        log_curves(mlflow_client(settings), run.info.run_id, quality)
        mlflow.log_metrics(
            {
                k: float(figures[k])
                for k in ("ratio", "time_to_f1_ratio")
                if figures.get(k) is not None
            }
        )
        mlflow.log_dict({**figures, "mlflow_run_id": run.info.run_id}, BENCH_JSON)
        return run.info.run_id


def bench_params(settings: Settings, quality: dict[str, Any]) -> dict[str, Any]:
    """The race's set-up and each side's pipeline, flat, for ``mlflow.log_params``."""
    shared = {
        k: quality[k]
        for k in (
            "dataset",
            "train_examples",
            "dev_examples",
            "target_f1",
            "budget_seconds",
            "eval_every",
            "batch_size",
            "epochs",
        )
    }
    sides = {
        f"{side}_{k}": quality[side][k]
        for side in ("baseline", "ours")
        for k in ("padding", "precision", "max_length", "evidence", "learning_rate")
    }
    return {"base_model": settings.model.base_model, **shared, **sides}


def log_curves(tracking: MlflowClient, run_id: str, quality: dict[str, Any]) -> None:
    """Both curves in one batch: ``dev_f1_macro_<side>`` at step = training milliseconds."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(f"dev_f1_macro_{side}", point["f1_macro"], now, round(point["seconds"] * 1000))
        for side in ("baseline", "ours")
        for point in quality[side]["curve"]
    ]
    tracking.log_batch(run_id, metrics=metrics)
