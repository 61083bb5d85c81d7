"""Benchmark evaluation of a model on the SciFact and Citation-Integrity test sets.

For each configured dataset: accuracy, macro / micro / per-class F1, macro and weighted
AUROC, per-example latency p50 / p95 (one pair per call, the serving path's worst case)
and the majority-class baseline (the most frequent label of that dataset's training
split, always predicted). The results are also logged as an MLflow evaluation run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.data.multivers import Example, read_split, shuffled
from citeops.tasks.model.metrics import classification_metrics, majority_baseline

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.model.predictor import ClaimVerifier, Precision


@dataclass
class DatasetEvaluation:
    """Metrics of the model and of the majority baseline on one dataset's split."""

    dataset: str
    split: str
    examples: int
    metrics: dict[str, float]
    baseline: dict[str, Any]
    latency_ms: dict[str, float]


@dataclass
class EvaluationResult:
    model_uri: str
    model_version: str | None
    datasets: dict[str, DatasetEvaluation] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def mean_f1_macro(self) -> float:
        scores = [d.metrics["f1_macro"] for d in self.datasets.values() if d.metrics]
        return float(np.mean(scores)) if scores else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "run_id": self.run_id,
            "mean_f1_macro": self.mean_f1_macro,
            "datasets": {name: asdict(d) for name, d in self.datasets.items()},
        }


def single_pair_latency_ms(
    verifier: ClaimVerifier, examples: Sequence[Example], samples: int
) -> dict[str, float]:
    """p50 / p95 / mean milliseconds of ``predict_proba`` on one pair at a time."""
    chosen = list(examples[:samples])
    if not chosen:
        return {}
    verifier.predict_proba([chosen[0].claim], [chosen[0].evidence])  # warm-up
    times = []
    for ex in chosen:
        start = time.perf_counter()
        verifier.predict_proba([ex.claim], [ex.evidence])
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "p50": float(np.percentile(times, 50)),
        "p95": float(np.percentile(times, 95)),
        "mean": float(np.mean(times)),
        "samples": float(len(times)),
    }


def evaluate_dataset(
    verifier: ClaimVerifier, settings: Settings, dataset: str
) -> DatasetEvaluation:
    """Score ``dataset``'s evaluation split; baseline from its training split's majority."""
    cfg = settings.evaluate
    examples = read_split(settings.data_dir, dataset, cfg.split)
    if cfg.max_examples:
        examples = shuffled(examples, seed=0)[: cfg.max_examples]
    targets = [ex.label for ex in examples]
    probs = verifier.predict_proba(
        [ex.claim for ex in examples], [ex.evidence for ex in examples], cfg.batch_size
    )
    train_labels = [ex.label for ex in read_split(settings.data_dir, dataset, "train")]
    latency = single_pair_latency_ms(verifier, shuffled(examples, seed=1), cfg.latency_samples)
    return DatasetEvaluation(
        dataset=dataset,
        split=cfg.split,
        examples=len(examples),
        metrics=classification_metrics(probs, targets, verifier.labels),
        baseline=majority_baseline(train_labels, targets, verifier.labels),
        latency_ms=latency,
    )


def log_evaluation_run(settings: Settings, result: EvaluationResult) -> str:
    """An MLflow run (``evaluate``) with the model URI, per-dataset metrics and the JSON."""
    import mlflow
    from citeops.tasks.model.registry import ensure_experiment

    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate") as run:
        mlflow.set_tags({"citeops.kind": "evaluation", "model_uri": result.model_uri})
        mlflow.log_params(
            {
                "model_uri": result.model_uri,
                "model_version": result.model_version,
                "split": settings.evaluate.split,
                "max_examples": settings.evaluate.max_examples,
            }
        )
        metrics: dict[str, float] = {"mean_f1_macro": result.mean_f1_macro}
        for name, ds in result.datasets.items():
            metrics.update({f"{name}_{k}": float(v) for k, v in ds.metrics.items()})
            metrics[f"{name}_baseline_f1_macro"] = float(ds.baseline["f1_macro"])
            metrics.update({f"{name}_latency_{k}_ms": v for k, v in ds.latency_ms.items()})
        mlflow.log_metrics(metrics)
        result.run_id = run.info.run_id
        mlflow.log_dict(result.to_dict(), "evaluation.json")
    return run.info.run_id


def evaluate_model(
    settings: Settings,
    model_uri: str,
    precision: Precision = "fp32",
    log_to_mlflow: bool = True,
) -> EvaluationResult:
    """Evaluate the model at ``model_uri`` (MLflow URI or folder) on the test sets.

    Raises:
        ModelLoadError: the URI does not resolve to a model.
        DataFileError: a dataset file is missing or corrupt.
    """
    from citeops.tasks.model.predictor import load_verifier

    verifier = load_verifier(model_uri, settings, precision=precision)
    result = EvaluationResult(model_uri, verifier.model_version)
    for dataset in settings.evaluate.datasets:
        result.datasets[dataset] = evaluate_dataset(verifier, settings, dataset)
    if log_to_mlflow:
        log_evaluation_run(settings, result)
    return result
