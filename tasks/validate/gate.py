"""The model gate: may a candidate replace the champion?

:func:`decide` compares candidate and champion predictions on the same examples of each
benchmark (SciFact test, Citation-Integrity test, the feedback hold-out) and returns a
:class:`GateDecision` with every refusal reason; :func:`require_gate` raises
:class:`GateFailed` when it refused. Rules (thresholds from :class:`GateSettings`):

- with a champion, per benchmark: refuse a significant regression (the paired bootstrap
  95 % interval of candidate minus champion macro F1 lies wholly below 0) or a point drop
  of more than ``max_f1_drop`` (on benchmarks of at least ``min_drop_examples``); the
  mean difference over the benchmarks must reach ``min_improvement``; the candidate's p95
  single-pair latency must stay within ``1 + max_latency_increase`` times the champion's;
- always: the candidate's macro F1 must beat the majority-class baseline on each
  benchmark that has one (by more than ``baseline_margin``), so that no promoted model is
  worse than always answering the most frequent label, even if the champion was; no
  class present in a benchmark's gold labels has a candidate F1 below ``class_f1_floor``
  (the feedback hold-out excepted), and the share of behavioural checks that hold
  reaches ``behaviour_min_pass``.

A benchmark with no examples is skipped with a note. Macro F1 is over the three labels
(SUPPORT 0, NEI 1, REFUTE 2); a class with no gold and no predicted example scores 0, as
``sklearn.metrics.f1_score(labels=[0, 1, 2], zero_division=0)`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.configs.lifecycle import StatsSettings
from citeops.tasks.classifier.stats import (
    CONFIDENCE,
    NUM_CLASSES,
    _as_ids,
    class_f1,
    macro_f1,
    paired_bootstrap_f1_difference,
)
from citeops.tasks.data.multivers import LABELS
from citeops.tasks.errors import CiteopsError
from citeops.tasks.validate.behaviour import BehaviourReport

if TYPE_CHECKING:
    from citeops.configs.settings import GateSettings

__all__ = [
    "BehaviourReport",
    "BenchmarkPredictions",
    "FEEDBACK_HOLDOUT",
    "GateDecision",
    "GateFailed",
    "GateRow",
    "LatencyComparison",
    "class_f1",
    "decide",
    "macro_f1",
    "paired_bootstrap_f1_difference",
    "require_gate",
]

logger = logging.getLogger(__name__)

FEEDBACK_HOLDOUT = "feedback-holdout"


@dataclass(frozen=True)
class BenchmarkPredictions:
    """Predicted label ids of candidate and champion on the same examples of one benchmark.

    ``majority_label`` is the most frequent label of the dataset's training split (the
    baseline), ``None`` for the feedback hold-out. ``class_floor`` says whether the class
    F1 floor applies; ``None`` means everywhere but the feedback hold-out.

    Raises:
        ValueError: lengths differ or a label id is outside 0..2.
    """

    name: str
    gold: list[int]
    candidate: list[int]
    champion: list[int] | None
    majority_label: int | None = None
    class_floor: bool | None = None

    def __post_init__(self) -> None:
        columns = {"candidate": self.candidate}
        if self.champion is not None:
            columns["champion"] = self.champion
        for what, values in columns.items():
            if len(values) != len(self.gold):
                raise ValueError(
                    f"benchmark {self.name}: {len(values)} {what} predictions for "
                    f"{len(self.gold)} gold labels; both models must see the same examples"
                )
        for what, values in {"gold": self.gold, **columns}.items():
            if any(not 0 <= int(v) < NUM_CLASSES for v in values):
                raise ValueError(f"benchmark {self.name}: {what} holds a label id outside 0..2")
        if self.majority_label is not None and not 0 <= self.majority_label < NUM_CLASSES:
            raise ValueError(f"benchmark {self.name}: majority_label outside 0..2")

    @property
    def applies_class_floor(self) -> bool:
        return self.name != FEEDBACK_HOLDOUT if self.class_floor is None else self.class_floor


@dataclass(frozen=True)
class LatencyComparison:
    """p95 milliseconds of one (claim, evidence) pair per call, measured in the same task."""

    candidate_p95_ms: float
    champion_p95_ms: float | None


@dataclass(frozen=True)
class GateRow:
    """One benchmark of the "candidate vs champion" table.

    ``difference``, ``ci_low`` and ``ci_high`` are candidate minus champion macro F1 and its
    paired bootstrap 95 % interval (``None`` without a champion); ``baseline_f1`` is the
    majority-class baseline's macro F1 (``None`` without a majority label);
    ``class_support`` counts the gold examples of each class.
    """

    benchmark: str
    examples: int
    candidate_f1: float
    champion_f1: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    baseline_f1: float | None
    candidate_class_f1: dict[str, float]
    champion_class_f1: dict[str, float] | None
    class_support: dict[str, int] = field(default_factory=dict)


@dataclass
class GateDecision:
    """The gate's verdict, its reasons (one sentence each, with the figures) and inputs.

    ``reasons`` are why the candidate was refused (empty when it passed); ``notes`` say
    what was skipped and why. ``mean_improvement`` is the mean macro-F1 difference over
    the compared benchmarks (``None`` without a champion).
    """

    passed: bool
    reasons: list[str]
    rows: list[GateRow]
    mean_improvement: float | None
    latency: LatencyComparison
    behaviour: BehaviourReport
    thresholds: dict[str, float]
    has_champion: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy of everything the decision holds."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "has_champion": self.has_champion,
            "mean_improvement": self.mean_improvement,
            "rows": [asdict(row) for row in self.rows],
            "latency": asdict(self.latency),
            "behaviour": self.behaviour.to_dict(),
            "thresholds": dict(self.thresholds),
        }

    def mlflow_metrics(self) -> dict[str, float]:
        """Flat ``gate_*`` metrics for ``mlflow.log_metrics`` (missing values left out)."""
        out: dict[str, float | None] = {
            "gate_passed": float(self.passed),
            "gate_reasons": float(len(self.reasons)),
            "gate_mean_improvement": self.mean_improvement,
            "gate_candidate_p95_ms": self.latency.candidate_p95_ms,
            "gate_champion_p95_ms": self.latency.champion_p95_ms,
            "gate_behaviour_share": self.behaviour.share,
            "gate_behaviour_passed": float(self.behaviour.passed),
            "gate_behaviour_total": float(self.behaviour.total),
        }
        for row in self.rows:
            prefix = f"gate_{row.benchmark}"
            out[f"{prefix}_examples"] = float(row.examples)
            out[f"{prefix}_candidate_f1"] = row.candidate_f1
            out[f"{prefix}_champion_f1"] = row.champion_f1
            out[f"{prefix}_f1_difference"] = row.difference
            out[f"{prefix}_ci_low"] = row.ci_low
            out[f"{prefix}_ci_high"] = row.ci_high
            out[f"{prefix}_baseline_f1"] = row.baseline_f1
            for label, value in row.candidate_class_f1.items():
                out[f"{prefix}_candidate_f1_{label}"] = value
            for label, value in (row.champion_class_f1 or {}).items():
                out[f"{prefix}_champion_f1_{label}"] = value
        return {key: float(value) for key, value in out.items() if value is not None}

    def markdown_table(self) -> str:
        """The "candidate vs champion" table in Markdown, then latency, behaviour, verdict."""
        header = [
            "benchmark",
            "n",
            "candidate F1",
            "champion F1",
            "difference (95 % CI)",
            "majority F1",
            f"candidate F1 per class ({' / '.join(LABELS)})",
        ]
        lines = [
            "| " + " | ".join(header) + " |",
            "| " + " | ".join("---" for _ in header) + " |",
        ]
        lines += ["| " + " | ".join(_row_cells(row)) + " |" for row in self.rows]
        lines += ["", *(f"- {line}" for line in self._summary_lines())]
        return "\n".join(lines) + "\n"

    def text_table(self) -> str:
        """The same table laid out in columns for a terminal."""
        header = ["benchmark", "n", "cand F1", "champ F1", "diff (95% CI)", "majority", "class F1"]
        table = [header, *(_row_cells(row) for row in self.rows)]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += ["", *self._summary_lines()]
        return "\n".join(line.rstrip() for line in lines) + "\n"

    def _summary_lines(self) -> list[str]:
        limit = self.thresholds.get("max_latency_increase", 0.0)
        champion_ms = self.latency.champion_p95_ms
        latency = f"latency p95 (one pair): candidate {self.latency.candidate_p95_ms:.1f} ms"
        if champion_ms is not None:
            latency += f", champion {champion_ms:.1f} ms (limit {(1 + limit) * champion_ms:.1f} ms)"
        behaviour = self.behaviour
        lines = [
            latency,
            f"behaviour: {behaviour.passed} of {behaviour.total} checks hold "
            f"({100 * behaviour.share:.1f} %, need "
            f"{100 * self.thresholds.get('behaviour_min_pass', 0.0):.1f} %)",
        ]
        lines += [f"behaviour failure: {failure}" for failure in behaviour.failures]
        if self.mean_improvement is not None:
            lines.append(f"mean macro-F1 difference: {self.mean_improvement:+.3f}")
        lines.append(f"decision: {'PROMOTE' if self.passed else 'REFUSE'}")
        lines += [f"reason: {reason}" for reason in self.reasons]
        lines += [f"note: {note}" for note in self.notes]
        return lines


class GateFailed(CiteopsError):
    """The gate refused the candidate; ``decision`` holds the full :class:`GateDecision`."""

    def __init__(self, decision: GateDecision) -> None:
        self.decision = decision
        reasons = "; ".join(decision.reasons) or "no reason recorded"
        super().__init__(
            f"the gate refused the candidate ({len(decision.reasons)} reason"
            f"{'s' * (len(decision.reasons) != 1)}): {reasons}"
        )


# ---- metrics ---------------------------------------------------------------------------


# ---- the decision ----------------------------------------------------------------------


def _row(bench: BenchmarkPredictions, stats: StatsSettings) -> GateRow:
    """Scores of one non-empty benchmark."""
    baseline = None
    if bench.majority_label is not None:
        baseline = macro_f1(bench.gold, [bench.majority_label] * len(bench.gold))
    support = np.bincount(_as_ids(bench.gold), minlength=NUM_CLASSES)
    champion_f1 = difference = low = high = None
    champion_class = None
    if bench.champion is not None:
        champion_f1 = macro_f1(bench.gold, bench.champion)
        champion_class = class_f1(bench.gold, bench.champion)
        difference, low, high = paired_bootstrap_f1_difference(
            bench.gold,
            bench.candidate,
            bench.champion,
            stats.bootstrap_resamples,
            stats.bootstrap_seed,
        )
    return GateRow(
        benchmark=bench.name,
        examples=len(bench.gold),
        candidate_f1=macro_f1(bench.gold, bench.candidate),
        champion_f1=champion_f1,
        difference=difference,
        ci_low=low,
        ci_high=high,
        baseline_f1=baseline,
        candidate_class_f1=class_f1(bench.gold, bench.candidate),
        champion_class_f1=champion_class,
        class_support={label: int(c) for label, c in zip(LABELS, support, strict=True)},
    )


def _comparison_reasons(row: GateRow, settings: GateSettings) -> list[str]:
    """Refusals of one benchmark compared with the champion."""
    if row.difference is None or row.champion_f1 is None:
        return []
    reasons = []
    if row.ci_high is not None and row.ci_high < 0:
        reasons.append(
            f"{row.benchmark}: candidate macro F1 {row.candidate_f1:.3f} is significantly "
            f"below the champion's {row.champion_f1:.3f} (difference {row.difference:+.3f}, "
            f"95 % interval {row.ci_low:+.3f} to {row.ci_high:+.3f}, n={row.examples})."
        )
    # a point drop on a handful of examples is noise: only the interval judges those
    if row.difference < -settings.max_f1_drop and row.examples >= settings.min_drop_examples:
        reasons.append(
            f"{row.benchmark}: candidate macro F1 dropped by {-row.difference:.3f} "
            f"({row.champion_f1:.3f} to {row.candidate_f1:.3f}), more than "
            f"gate.max_f1_drop {settings.max_f1_drop:.3f}."
        )
    return reasons


def _floor_reasons(row: GateRow, settings: GateSettings) -> list[str]:
    """Classes present in the gold labels whose candidate F1 is below the floor."""
    return [
        f"{row.benchmark}: candidate F1 of class {label} is {score:.3f}, below "
        f"gate.class_f1_floor {settings.class_f1_floor:.3f} ({row.class_support[label]} "
        "gold examples)."
        for label, score in row.candidate_class_f1.items()
        if row.class_support.get(label, 0) > 0 and score < settings.class_f1_floor
    ]


def _baseline_reason(row: GateRow, settings: GateSettings) -> str | None:
    """Refusal when the candidate does not beat the majority-class baseline."""
    if row.baseline_f1 is None or row.candidate_f1 > row.baseline_f1 + settings.baseline_margin:
        return None
    margin = f" by more than {settings.baseline_margin:+.3f}" if settings.baseline_margin else ""
    return (
        f"{row.benchmark}: candidate macro F1 {row.candidate_f1:.3f} does not beat the "
        f"majority-class baseline's {row.baseline_f1:.3f}{margin}."
    )


def _latency_reason(latency: LatencyComparison, settings: GateSettings) -> str | None:
    if latency.champion_p95_ms is None:
        return None
    limit = (1 + settings.max_latency_increase) * latency.champion_p95_ms
    if latency.candidate_p95_ms <= limit:
        return None
    return (
        f"latency: candidate p95 {latency.candidate_p95_ms:.1f} ms per pair exceeds "
        f"{limit:.1f} ms, the champion's {latency.champion_p95_ms:.1f} ms plus "
        f"gate.max_latency_increase {100 * settings.max_latency_increase:.0f} %."
    )


def _behaviour_reason(behaviour: BehaviourReport, settings: GateSettings) -> str | None:
    if behaviour.share >= settings.behaviour_min_pass:
        return None
    if behaviour.total == 0:
        return (
            "behaviour: no behavioural checks were run, and gate.behaviour_min_pass is "
            f"{100 * settings.behaviour_min_pass:.1f} %."
        )
    first = f"; first failure: {behaviour.failures[0]}" if behaviour.failures else ""
    return (
        f"behaviour: {behaviour.passed} of {behaviour.total} checks hold "
        f"({100 * behaviour.share:.1f} %), below gate.behaviour_min_pass "
        f"{100 * settings.behaviour_min_pass:.1f} %{first}."
    )


def _thresholds(settings: GateSettings, stats: StatsSettings) -> dict[str, float]:
    return {
        "max_f1_drop": settings.max_f1_drop,
        "min_drop_examples": float(settings.min_drop_examples),
        "min_improvement": settings.min_improvement,
        "class_f1_floor": settings.class_f1_floor,
        "max_latency_increase": settings.max_latency_increase,
        "behaviour_min_pass": settings.behaviour_min_pass,
        "baseline_margin": settings.baseline_margin,
        "bootstrap_resamples": float(stats.bootstrap_resamples),
        "confidence": CONFIDENCE,
        "seed": float(stats.bootstrap_seed),
    }


def _check_champion_coverage(benchmarks: Sequence[BenchmarkPredictions]) -> bool:
    """Whether there is a champion; it must then have predictions on every non-empty
    benchmark."""
    has_champion = any(b.champion is not None for b in benchmarks)
    missing = [b.name for b in benchmarks if b.gold and b.champion is None]
    if not has_champion or not missing:
        return has_champion
    raise ValueError(
        f"benchmarks {', '.join(missing)} have no champion predictions while others do; "
        "score the champion on every benchmark that has examples, or on none"
    )


def decide(
    benchmarks: list[BenchmarkPredictions],
    latency: LatencyComparison,
    behaviour: BehaviourReport,
    settings: GateSettings,
    stats: StatsSettings | None = None,
) -> GateDecision:
    """Apply the gate's rules (see the module docstring) and return the verdict;
    ``stats`` sets the paired bootstrap (its defaults when not given).

    Raises:
        ValueError: some benchmarks have champion predictions and others do not.
    """
    has_champion = _check_champion_coverage(benchmarks)
    stats = stats or StatsSettings()
    notes: list[str] = []
    rows: list[GateRow] = []
    for bench in benchmarks:
        if not bench.gold:
            notes.append(f"{bench.name}: no examples, skipped.")
            continue
        rows.append(_row(bench, stats))
    floors = {b.name for b in benchmarks if b.applies_class_floor}
    reasons: list[str] = []
    if not rows:
        reasons.append("no benchmark had any examples, so nothing supports the candidate.")
    mean_improvement = None
    for row in rows:
        reasons += _comparison_reasons(row, settings)
        if row.benchmark in floors:
            reasons += _floor_reasons(row, settings)
        reasons += [r for r in [_baseline_reason(row, settings)] if r]
    if has_champion and rows:
        differences = [row.difference for row in rows if row.difference is not None]
        mean_improvement = float(np.mean(differences))
        if mean_improvement < settings.min_improvement:
            reasons.append(
                f"mean macro-F1 difference over {len(differences)} benchmarks is "
                f"{mean_improvement:+.3f}, below gate.min_improvement "
                f"{settings.min_improvement:+.3f}."
            )
    if has_champion:
        reasons += [r for r in [_latency_reason(latency, settings)] if r]
        if latency.champion_p95_ms is None:
            notes.append("latency: the champion's p95 was not measured, so it was not compared.")
    else:
        notes.append("no champion: only the majority baseline and absolute floors apply.")
    reasons += [r for r in [_behaviour_reason(behaviour, settings)] if r]
    decision = GateDecision(
        passed=not reasons,
        reasons=reasons,
        rows=rows,
        mean_improvement=mean_improvement,
        latency=latency,
        behaviour=behaviour,
        thresholds=_thresholds(settings, stats),
        has_champion=has_champion,
        notes=notes,
    )
    logger.info(
        "gate %s: %d reason(s)%s",
        "passed" if decision.passed else "refused",
        len(reasons),
        "".join(f"\n  {r}" for r in reasons),
    )
    return decision


def require_gate(decision: GateDecision) -> None:
    """Raise :class:`GateFailed` (listing every reason) unless ``decision`` passed."""
    if not decision.passed:
        raise GateFailed(decision)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _row_cells(row: GateRow) -> list[str]:
    """The table cells of one benchmark row."""
    interval = "-"
    if row.difference is not None:
        interval = f"{row.difference:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
    per_class = " / ".join(f"{row.candidate_class_f1[label]:.2f}" for label in LABELS)
    return [
        row.benchmark,
        str(row.examples),
        _fmt(row.candidate_f1),
        _fmt(row.champion_f1),
        interval,
        _fmt(row.baseline_f1),
        per_class,
    ]
