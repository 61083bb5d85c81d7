"""The retrain flow's validation stage: candidate and champion on the same examples.

Both models are loaded the way serving loads them (``serve.runtime`` at its precision:
what is validated and timed is what will be served), score the same
benchmark test examples and the feedback hold-out, and are timed one pair per call in
alternation (so that both see the same machine load), each pair's fastest of
``gate.latency_repeats`` calls kept. The candidate also runs the
behavioural suite. Everything is logged to one MLflow run (``validate``), candidate and
champion side by side; the gate (:mod:`citeops.tasks.validate.gate`) then decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.classifier import stats
from citeops.tasks.data.multivers import Example, read_split, shuffled
from citeops.tasks.inference.loading import load_verifier, registered_version
from citeops.tasks.registry.describe import (
    GATE_TAG,
    TRAINING_RUN_TAG,
    VALIDATION_RUN_TAG,
    VERSION_TAG,
    set_section,
    tag_run,
    tag_version,
    version_label,
)
from citeops.tasks.tracking import ensure_experiment, require_fluent_tracking
from citeops.tasks.validate.behaviour import run_behaviour_checks
from citeops.tasks.validate.gate import BenchmarkPredictions, LatencyComparison, decide

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.inference.predictor import ClaimVerifier
    from citeops.tasks.validate.behaviour import BehaviourReport
    from citeops.tasks.validate.gate import BenchmarkPredictions, LatencyComparison

log = logging.getLogger(__name__)

FEEDBACK_HOLDOUT = "feedback-holdout"


@dataclass
class Validation:
    """What the gate needs: per-benchmark predictions of both models, latency, behaviour."""

    candidate_uri: str
    champion_uri: str | None
    benchmarks: list[BenchmarkPredictions]
    latency: LatencyComparison
    behaviour: BehaviourReport
    run_id: str | None = None
    examples: dict[str, int] = field(default_factory=dict)
    # "candidate" / "champion" -> "<runtime> <precision>" they were validated on
    runtimes: dict[str, str] = field(default_factory=dict)


def benchmark_examples(settings: Settings) -> dict[str, list[Example]]:
    """The evaluation split of each ``evaluate.datasets`` (capped by ``evaluate.max_examples``
    after a seeded shuffle, so both models see the same subset)."""
    cfg = settings.evaluate
    out = {}
    for dataset in cfg.datasets:
        examples = read_split(settings.data_dir, dataset, cfg.split)
        if cfg.max_examples:
            examples = shuffled(examples, seed=0)[: cfg.max_examples]
        out[dataset] = examples
    return out


def majority_label(settings: Settings, dataset: str) -> int:
    """The most frequent label of the dataset's training split (the baseline's answer)."""
    train = read_split(settings.data_dir, dataset, "train")
    return stats.majority_label([ex.label for ex in train])


def predict_ids(verifier: ClaimVerifier, examples: Sequence[Example], batch_size: int) -> list[int]:
    """Predicted label ids, in the order of ``examples``."""
    probs = verifier.predict_proba(
        [ex.claim for ex in examples], [ex.evidence for ex in examples], batch_size
    )
    return [int(i) for i in np.asarray(probs).argmax(axis=1)] if len(examples) else []


def paired_latency_p95(
    candidate: ClaimVerifier,
    champion: ClaimVerifier | None,
    examples: Sequence[Example],
    samples: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float | None]:
    """p95 ms of one pair per call for each model, calls alternating pair by pair.

    Each pair is timed ``repeats`` times per model (still alternating) and its fastest
    time kept: a burst of other work on a shared machine (the live endpoint answering
    traffic during a retrain) then lands on one call of one model, not on that model's
    p95, while a model that is slower on every call stays slower.
    """
    chosen = list(examples[: max(samples, 1)])
    models = [candidate] + ([champion] if champion is not None else [])
    fastest: list[list[float]] = [[] for _ in models]
    for model in models:  # warm-up
        model.predict_proba([chosen[0].claim], [chosen[0].evidence])
    for ex in chosen:
        times: list[list[float]] = [[] for _ in models]
        for _ in range(max(repeats, 1)):
            for i, model in enumerate(models):
                start = clock()
                model.predict_proba([ex.claim], [ex.evidence])
                times[i].append((clock() - start) * 1000.0)
        for i, pair_times in enumerate(times):
            fastest[i].append(min(pair_times))
    p95 = [float(np.percentile(t, 95)) for t in fastest]
    return p95[0], (p95[1] if champion is not None else None)


def validate_against_champion(
    settings: Settings,
    candidate_uri: str,
    champion_uri: str | None,
    holdout: Sequence[Example],
) -> Validation:
    """Score candidate and champion on the same benchmark examples and feedback hold-out.

    Raises:
        ModelLoadError: a model cannot be loaded (e.g. weights missing).
        DataFileError: a dataset file is missing or corrupt.
    """

    runtime = settings.serve.runtime
    candidate = load_verifier(candidate_uri, settings, runtime=runtime)
    champion = load_verifier(champion_uri, settings, runtime=runtime) if champion_uri else None
    log.info(
        "validating on the serving runtime: candidate %s %s, champion %s",
        candidate.runtime,
        candidate.runtime_precision,
        f"{champion.runtime} {champion.runtime_precision}" if champion else "none",
    )
    batch = settings.evaluate.batch_size
    sets = benchmark_examples(settings)
    benchmarks = []
    for name, examples in [*sets.items(), (FEEDBACK_HOLDOUT, list(holdout))]:
        log.info("validating on %s (%d examples)", name, len(examples))
        benchmarks.append(
            BenchmarkPredictions(
                name=name,
                gold=[ex.label for ex in examples],
                candidate=predict_ids(candidate, examples, batch),
                champion=predict_ids(champion, examples, batch) if champion else None,
                majority_label=None if name == FEEDBACK_HOLDOUT else majority_label(settings, name),
            )
        )
    timing = shuffled([ex for examples in sets.values() for ex in examples], seed=1)
    cand_p95, champ_p95 = paired_latency_p95(
        candidate,
        champion,
        timing,
        settings.evaluate.latency_samples,
        settings.gate.latency_repeats,
    )
    behaviour = run_behaviour_checks(candidate.predict_labels)
    return Validation(
        candidate_uri=candidate_uri,
        champion_uri=champion_uri,
        benchmarks=benchmarks,
        latency=LatencyComparison(cand_p95, champ_p95),
        behaviour=behaviour,
        examples={b.name: len(b.gold) for b in benchmarks},
        runtimes={
            name: f"{model.runtime} {model.runtime_precision}"
            for name, model in (("candidate", candidate), ("champion", champion))
            if model is not None
        },
    )


def log_validation(settings: Settings, validation: Validation, decision: Any) -> str:
    """One MLflow run ``validate v3 vs v2``: both models' figures side by side, the gate's
    decision (metrics, ``gate.json``, ``gate.md``) and its thresholds as parameters; then
    linked to the candidate's version (:func:`link_validation`)."""
    import mlflow

    require_fluent_tracking(settings)
    experiment_id = ensure_experiment(settings)
    name = (
        f"validate {version_label(validation.candidate_uri)} "
        f"vs {version_label(validation.champion_uri)}"
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags(
            {
                "citeops.kind": "validation",
                "candidate_uri": validation.candidate_uri,
                "champion_uri": validation.champion_uri or "",
                "gate.passed": str(decision.passed).lower(),
                **{f"{name}_runtime": value for name, value in validation.runtimes.items()},
            }
        )
        mlflow.log_params({f"gate.{k}": v for k, v in decision.thresholds.items()})
        mlflow.log_params({f"examples.{k}": v for k, v in validation.examples.items()})
        mlflow.log_metrics(decision.mlflow_metrics())
        mlflow.log_dict(decision.to_dict(), "gate.json")
        mlflow.log_text(decision.markdown_table(), "gate.md")
    validation.run_id = run.info.run_id
    link_validation(settings, validation, decision)
    return run.info.run_id


def link_validation(settings: Settings, validation: Validation, decision: Any) -> None:
    """Tie the validation run to the candidate's registered version (when the candidate
    is one): tags both ways with its training run, and the description's "Gate" section
    (verdict, reasons, the table)."""

    found = registered_version(validation.candidate_uri, settings)
    if found is None or validation.run_id is None:
        return
    version, run_id = str(found.version), validation.run_id
    verdict = "passed" if decision.passed else "refused"
    tag_run(settings, run_id, {VERSION_TAG: version, TRAINING_RUN_TAG: found.run_id or ""})
    if found.run_id:
        tag_run(settings, found.run_id, {VALIDATION_RUN_TAG: run_id})
    tag_version(settings, version, {VALIDATION_RUN_TAG: run_id, GATE_TAG: verdict})
    reasons = "".join(f"\n- {reason}" for reason in decision.reasons)
    body = (
        f"Gate **{verdict}** against {validation.champion_uri or 'no champion'} "
        f"(validation run `{run_id}`).{reasons}\n\n{decision.markdown_table()}"
    )
    set_section(settings, version, "Gate", body)


def judge(settings: Settings, validation: Validation) -> Any:
    """The gate's decision on ``validation`` (``gate`` settings), logged to MLflow with both
    models' figures (:func:`log_validation`); raising is left to ``require_gate``."""

    decision = decide(
        validation.benchmarks,
        validation.latency,
        validation.behaviour,
        settings.gate,
        settings.stats,
    )
    log_validation(settings, validation, decision)
    return decision
