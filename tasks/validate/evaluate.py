"""Benchmark evaluation of a model on the SciFact and Citation-Integrity test sets.

For each configured dataset: accuracy, macro / micro / per-class F1 with a 95 % bootstrap
interval on macro F1 (the gate's resampling, :func:`tasks.validate.gate.bootstrap_f1_interval`),
the confusion matrix, macro and weighted AUROC, per-example latency p50 / p95 (one pair
per call, the serving path's worst case, after untimed warm-up calls) and the
majority-class baseline (the most frequent label of that dataset's training split, always
predicted). The results are also logged as an MLflow evaluation run, with the table and a
confusion-matrix plot as artifacts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.classifier.stats import (
    bootstrap_f1_interval,
    classification_metrics,
    confusion_matrix,
    majority_baseline,
)
from citeops.tasks.data.multivers import Example, read_split, shuffled
from citeops.tasks.inference.loading import load_verifier
from citeops.tasks.registry.describe import TRAINING_RUN_TAG, version_label
from citeops.tasks.tracking import ensure_experiment, mlflow_client, require_fluent_tracking

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.inference.predictor import ClaimVerifier, Precision

WARMUP_CALLS = 5  # untimed single-pair calls before latency is measured
TABLE_ARTIFACT = "evaluation_table.json"
CONFUSION_ARTIFACT = "confusion_matrices.png"


@dataclass
class DatasetEvaluation:
    """Metrics of the model and of the majority baseline on one dataset's split.

    ``confusion[i][j]``: pairs of gold label ``labels[i]`` predicted ``labels[j]``.
    ``f1_macro_ci95``: 95 % bootstrap interval of the model's macro F1.
    """

    dataset: str
    split: str
    examples: int
    metrics: dict[str, float]
    baseline: dict[str, Any]
    latency_ms: dict[str, float]
    f1_macro_ci95: tuple[float, float] | None = None
    confusion: list[list[int]] = field(default_factory=list)
    labels: tuple[str, ...] = ()

    @property
    def beats_baseline(self) -> bool:
        """Macro F1 strictly above the majority baseline's (what the gate asks of a model)."""
        return float(self.metrics.get("f1_macro", 0.0)) > float(self.baseline["f1_macro"])


@dataclass
class EvaluationResult:
    model_uri: str
    model_version: str | None
    datasets: dict[str, DatasetEvaluation] = field(default_factory=dict)
    run_id: str | None = None
    training_run_id: str | None = None  # the MLflow run that trained the evaluated model
    evidence_selection: dict[str, Any] = field(default_factory=dict)
    max_length: int | None = None
    runtime: str | None = None  # "<runtime> <precision>" the model was evaluated on

    @property
    def mean_f1_macro(self) -> float:
        scores = [d.metrics["f1_macro"] for d in self.datasets.values() if d.metrics]
        return float(np.mean(scores)) if scores else float("nan")

    @property
    def mean_baseline_f1_macro(self) -> float:
        scores = [float(d.baseline["f1_macro"]) for d in self.datasets.values() if d.baseline]
        return float(np.mean(scores)) if scores else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` payload: scores rounded to 4 decimals, milliseconds to 2."""
        datasets = {}
        for name, ds in self.datasets.items():
            row = asdict(ds)
            row["latency_ms"] = rounded(ds.latency_ms, 2)
            row["beats_baseline"] = ds.beats_baseline
            datasets[name] = rounded(row, 4)
        return {
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "run_id": self.run_id,
            "training_run_id": self.training_run_id,
            "evidence_selection": self.evidence_selection,
            "max_length": self.max_length,
            "runtime": self.runtime,
            "mean_f1_macro": rounded(self.mean_f1_macro, 4),
            "mean_baseline_f1_macro": rounded(self.mean_baseline_f1_macro, 4),
            "datasets": datasets,
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per dataset with named columns (printed, and logged to MLflow)."""
        rows = []
        for name, ds in self.datasets.items():
            m, low_high = ds.metrics, ds.f1_macro_ci95 or (float("nan"), float("nan"))
            rows.append(
                {
                    "dataset": name,
                    "pairs": ds.examples,
                    "macro F1": m.get("f1_macro", float("nan")),
                    "95% CI low": low_high[0],
                    "95% CI high": low_high[1],
                    "majority baseline": float(ds.baseline["f1_macro"]),
                    "beats baseline": ds.beats_baseline,
                    "accuracy": m.get("accuracy", float("nan")),
                    **{f"F1 {x}": m.get(f"f1_{x}", float("nan")) for x in ds.labels},
                    "AUROC": m.get("auroc_macro", float("nan")),
                    "p50 ms": ds.latency_ms.get("p50", float("nan")),
                    "p95 ms": ds.latency_ms.get("p95", float("nan")),
                }
            )
        return rows

    def text_report(self) -> str:
        """The table for people: named columns, the baseline beside the model, a flag on
        datasets below it, where the model came from, and the confusion matrices."""
        version = f" (version {self.model_version})" if self.model_version else ""
        lines = [
            f"model {self.model_uri}{version}, trained in MLflow run "
            f"{self.training_run_id or 'unknown'}; this evaluation is run {self.run_id or '-'}",
            f"evidence selection: {_describe_selection(self.evidence_selection)}",
        ]
        if self.runtime:
            lines.append(f"runtime: {self.runtime}")
        rows = self.table_rows()
        if rows:
            lines += ["", *_format_table(rows)]
        flagged = [r["dataset"] for r in rows if not r["beats baseline"]]
        lines.append(
            f"mean macro F1 {self.mean_f1_macro:.3f} (majority baseline "
            f"{self.mean_baseline_f1_macro:.3f})"
        )
        if flagged:
            lines.append(
                "BELOW the majority baseline on: "
                + ", ".join(flagged)
                + " (always predicting the training split's most frequent label does as well)"
            )
        samples = {int(d.latency_ms.get("samples", 0)) for d in self.datasets.values()}
        lines.append(
            f"latency: one pair per call, {'/'.join(map(str, sorted(samples)))} calls per "
            f"dataset after {WARMUP_CALLS} untimed warm-up calls"
        )
        for name, ds in self.datasets.items():
            lines += ["", f"confusion matrix, {name} {ds.split} (rows gold, columns predicted)"]
            lines += _format_confusion(ds.confusion, ds.labels)
        return "\n".join(lines)


def rounded(value: Any, digits: int) -> Any:
    """``value`` with every float (in nested dicts, lists and tuples) rounded to ``digits``."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def _describe_selection(selection: dict[str, Any]) -> str:
    method = selection.get("method", "off")
    if method == "off":
        return "off (the whole evidence, truncated to max_length)"
    budget = selection.get("budget_tokens")
    parts = [str(method)]
    if selection.get("lead_sentences"):
        parts.append(f"first {selection['lead_sentences']} sentence(s) always kept")
    parts.append(f"budget {budget} tokens" if budget else "budget: what max_length leaves")
    return ", ".join(parts)


def _format_table(rows: list[dict[str, Any]]) -> list[str]:
    """Aligned text columns; floats with 3 decimals (latency with 1), CI as [low, high]."""
    cells: list[dict[str, str]] = []
    for row in rows:
        cell = {}
        for key, value in row.items():
            if key in ("95% CI low", "95% CI high", "beats baseline"):
                continue
            if isinstance(value, float):
                cell[key] = f"{value:.1f}" if key.endswith("ms") else f"{value:.3f}"
            else:
                cell[key] = str(value)
            if key == "macro F1":
                cell["95% CI"] = f"[{row['95% CI low']:.3f}, {row['95% CI high']:.3f}]"
        cell["flag"] = "" if row["beats baseline"] else "BELOW BASELINE"
        cells.append(cell)
    columns = list(cells[0])
    widths = {c: max(len(c), *(len(x[c]) for x in cells)) for c in columns}
    header = "  ".join(
        c.ljust(widths[c]) if c in ("dataset", "flag") else c.rjust(widths[c]) for c in columns
    )
    body = [
        "  ".join(
            x[c].ljust(widths[c]) if c in ("dataset", "flag") else x[c].rjust(widths[c])
            for c in columns
        ).rstrip()
        for x in cells
    ]
    return [header.rstrip(), *body]


def _format_confusion(confusion: list[list[int]], labels: Sequence[str]) -> list[str]:
    if not confusion:
        return ["  (no examples)"]
    width = max(7, *(len(x) for x in labels))
    lines = ["  " + " " * width + "".join(f"{x:>{width + 2}s}" for x in labels)]
    for label, row in zip(labels, confusion, strict=True):
        lines.append(f"  {label:<{width}s}" + "".join(f"{n:>{width + 2}d}" for n in row))
    return lines


def single_pair_latency_ms(
    verifier: ClaimVerifier, examples: Sequence[Example], samples: int, warmup: int = WARMUP_CALLS
) -> dict[str, float]:
    """p50 / p95 / mean milliseconds of ``predict_proba`` on one pair at a time, over
    ``samples`` pairs, after ``warmup`` untimed calls (first-call costs: kernel selection
    for new shapes, lazily loaded parts) so that they do not land in the first dataset."""
    chosen = list(examples[:samples])
    if not chosen:
        return {}
    for ex in list(examples[samples : samples + warmup]) or chosen[:warmup]:
        verifier.predict_proba([ex.claim], [ex.evidence])
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
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    interval = None
    if targets:
        _, low, high = bootstrap_f1_interval(
            targets, predicted, settings.stats.bootstrap_resamples, settings.stats.bootstrap_seed
        )
        interval = (low, high)
    return DatasetEvaluation(
        dataset=dataset,
        split=cfg.split,
        examples=len(examples),
        metrics=classification_metrics(probs, targets, verifier.labels),
        baseline=majority_baseline(train_labels, targets, verifier.labels),
        latency_ms=latency,
        f1_macro_ci95=interval,
        confusion=confusion_matrix(targets, predicted, len(verifier.labels)),
        labels=tuple(verifier.labels),
    )


def confusion_figure(result: EvaluationResult) -> Any:
    """A matplotlib figure with one confusion-matrix panel per dataset (no pyplot state)."""
    from matplotlib.figure import Figure

    names = list(result.datasets)
    figure = Figure(figsize=(4.2 * max(len(names), 1), 4.0), layout="constrained")
    axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=False):
        ds = result.datasets[name]
        counts = np.asarray(ds.confusion or [[0]])
        ax.imshow(counts, cmap="Blues")
        for (i, j), n in np.ndenumerate(counts):
            dark = n > counts.max() / 2
            ax.text(j, i, str(n), ha="center", va="center", color="white" if dark else "black")
        ax.set_xticks(range(len(ds.labels)), ds.labels)
        ax.set_yticks(range(len(ds.labels)), ds.labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        f1 = ds.metrics.get("f1_macro", float("nan"))
        ax.set_title(
            f"{name} {ds.split}: macro F1 {f1:.3f}\nmajority baseline {ds.baseline['f1_macro']:.3f}"
        )
    return figure


def log_evaluation_run(settings: Settings, result: EvaluationResult) -> str:
    """An MLflow run (``evaluate``) with the model URI, per-dataset metrics and the JSON."""
    import mlflow

    require_fluent_tracking(settings)
    experiment_id = ensure_experiment(settings)
    label = f"v{result.model_version}" if result.model_version else version_label(result.model_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluate {label}") as run:
        mlflow.set_tags({"citeops.kind": "evaluation", "model_uri": result.model_uri})
        mlflow.log_params(
            {
                "model_uri": result.model_uri,
                "model_version": result.model_version,
                "split": settings.evaluate.split,
                "max_examples": settings.evaluate.max_examples,
                "runtime": result.runtime,
            }
        )
        metrics: dict[str, float] = {"mean_f1_macro": result.mean_f1_macro}
        for name, ds in result.datasets.items():
            metrics.update({f"{name}_{k}": float(v) for k, v in ds.metrics.items()})
            metrics[f"{name}_baseline_f1_macro"] = float(ds.baseline["f1_macro"])
            metrics.update({f"{name}_latency_{k}_ms": v for k, v in ds.latency_ms.items()})
            if ds.f1_macro_ci95:
                metrics[f"{name}_f1_macro_ci95_low"] = ds.f1_macro_ci95[0]
                metrics[f"{name}_f1_macro_ci95_high"] = ds.f1_macro_ci95[1]
        mlflow.log_metrics(metrics)
        if result.training_run_id:
            mlflow.set_tags(
                {
                    "training_run_id": result.training_run_id,
                    TRAINING_RUN_TAG: result.training_run_id,
                }
            )
        result.run_id = run.info.run_id
        mlflow.log_dict(result.to_dict(), "evaluation.json")
        if result.datasets:
            import pandas as pd

            mlflow.log_table(pd.DataFrame(result.table_rows()), artifact_file=TABLE_ARTIFACT)
            mlflow.log_figure(confusion_figure(result), CONFUSION_ARTIFACT)
    return run.info.run_id


def training_run_of(settings: Settings, model_uri: str, verifier: ClaimVerifier) -> str | None:
    """The MLflow run that trained the model: its ``citeops.json`` ``run_id``, else the run
    its registered version was logged in; None when neither is known."""
    if verifier.meta.get("run_id"):
        return str(verifier.meta["run_id"])
    if not (model_uri.startswith("models:/") and verifier.model_version):
        return None
    from mlflow.exceptions import MlflowException

    name = model_uri[len("models:/") :].strip("/").split("@")[0].split("/")[0]
    try:
        found = mlflow_client(settings).get_model_version(name, verifier.model_version)
    except MlflowException:
        return None
    return found.run_id or None


def evaluate_model(
    settings: Settings,
    model_uri: str,
    precision: Precision = "fp32",
    log_to_mlflow: bool = True,
    runtime: str | None = None,
) -> EvaluationResult:
    """Evaluate the model at ``model_uri`` (MLflow URI or folder) on the test sets.

    ``runtime`` None: PyTorch at ``precision``; else torch | onnxruntime | openvino | auto
    at its serving precision (``serve.*precision``), exactly as the endpoint runs it.

    Raises:
        ModelLoadError: the URI does not resolve to a model.
        DataFileError: a dataset file is missing or corrupt.
        RuntimeUnavailable: the runtime is not installed.
    """

    verifier = load_verifier(model_uri, settings, precision=precision, runtime=runtime)
    result = EvaluationResult(
        model_uri,
        verifier.model_version,
        training_run_id=training_run_of(settings, model_uri, verifier),
        evidence_selection=verifier.selection.to_meta(),
        max_length=verifier.max_length,
        runtime=f"{verifier.runtime} {verifier.runtime_precision}",
    )
    for dataset in settings.evaluate.datasets:
        result.datasets[dataset] = evaluate_dataset(verifier, settings, dataset)
    if log_to_mlflow:
        log_evaluation_run(settings, result)
    return result
