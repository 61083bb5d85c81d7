"""``train_model(settings)``: fine-tune the verifier, track it in MLflow, register a version.

Plain function (the CLI and the Prefect flow call it): reads the configured datasets, trains
with Lightning (length-bucketed batches, AdamW with warm-up and linear decay, optional
class weights, bf16 autocast where it is fast), selects the epoch with the best dev macro
F1 (early stopping on it), logs parameters, per-epoch metrics, dataset digests and the
model to MLflow and registers a new version of ``settings.mlflow.registered_model``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.data.multivers import (
    LABELS,
    Example,
    claims_file,
    corpus_file,
    files_digest,
    label_counts,
    read_splits,
    shuffled,
)
from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


# the mean over datasets of dev macro F1: what `citeops evaluate` reports on the test sets
SELECTION_METRIC = "val_f1_macro_by_dataset"


class TrainingError(CiteopsError):
    """Training cannot start or did not produce a model (e.g. no training examples)."""


@dataclass
class TrainResult:
    """What a training run produced; ``metrics`` are the selected epoch's dev metrics."""

    run_id: str
    model_uri: str
    model_version: str
    metrics: dict[str, float]
    logged_model_uri: str = ""
    alias: str | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    steps: int = 0
    train_examples: int = 0
    dev_examples: int = 0
    wall_seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The CLI's ``--json`` payload."""
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "metrics": self.metrics,
        }


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX512-BF16 or AMX), where it pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning precision for ``auto``: bf16-mixed on a bf16 GPU or a bf16 CPU, else 32."""
    if precision != "auto":
        return "32-true" if precision == "32" else precision
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def load_training_data(settings: Settings) -> tuple[list[Example], list[Example]]:
    """Train and dev examples of the configured datasets, shuffled by the seed and capped.

    Raises:
        DataFileError: a dataset file is missing or corrupt.
        TrainingError: the cap leaves no training example.
    """
    cfg = settings.train
    train = read_splits(settings.data_dir, cfg.datasets, "train", seed=cfg.seed)
    dev = read_splits(settings.data_dir, cfg.datasets, "dev", seed=cfg.seed)
    if cfg.include_feedback:
        from citeops.tasks.store.queries import training_feedback

        feedback = training_feedback(settings)
        if feedback:
            train = shuffled(train + feedback, cfg.seed)
    if cfg.max_examples:
        train = train[: cfg.max_examples]
    if cfg.max_eval_examples:
        dev = dev[: cfg.max_eval_examples]
    if not train:
        raise TrainingError(f"no training examples in {settings.data_dir} for {cfg.datasets}")
    return train, dev


def training_params(settings: Settings, precision: str) -> dict[str, Any]:
    """Everything that defines the run, flat, for ``mlflow.log_params``."""
    cfg = settings.train
    return {
        "base_model": settings.model.base_model,
        "datasets": ",".join(cfg.datasets),
        "epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "max_examples": cfg.max_examples,
        "max_eval_examples": cfg.max_eval_examples,
        "max_length": cfg.max_length,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "layer_lr_decay": cfg.layer_lr_decay,
        "weight_decay": cfg.weight_decay,
        "warmup_ratio": cfg.warmup_ratio,
        "class_weighted_loss": cfg.class_weighted_loss,
        "precision": precision,
        "bucket_size_multiplier": cfg.bucket_size_multiplier,
        "early_stopping_patience": cfg.early_stopping_patience,
        "max_minutes": cfg.max_minutes,
        "threads": cfg.threads,
        "seed": cfg.seed,
    }


FEEDBACK_DATASET = "feedback"  # the dataset name of curated feedback examples


def rows_digest(rows: Sequence[Example]) -> str:
    """SHA-256 over the examples' text and labels, in order: a version of data without files."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.claim}\x1f{row.evidence}\x1f{row.label}\x1e".encode())
    return digest.hexdigest()


def log_dataset_inputs(
    settings: Settings, examples: Sequence[Example], split: str, context: str
) -> None:
    """``mlflow.log_input`` for each dataset in ``examples``: digest = SHA-256 of its files."""
    import pandas as pd

    import mlflow

    for dataset in sorted({ex.dataset for ex in examples}):
        rows = [ex for ex in examples if ex.dataset == dataset]
        if dataset == FEEDBACK_DATASET:  # curated feedback: no files, digest of the rows
            source, digest = "citeops-store:feedback", rows_digest(rows)
        else:
            paths = [
                corpus_file(settings.data_dir, dataset),
                claims_file(settings.data_dir, dataset, split),
            ]
            source, digest = str(paths[1]), files_digest(paths)
        frame = pd.DataFrame(
            {
                "claim": [r.claim for r in rows],
                "evidence": [r.evidence for r in rows],
                "label": [r.label for r in rows],
            }
        )
        with warnings.catch_warnings():  # "cannot resolve the source type" of a plain path
            warnings.simplefilter("ignore")
            data = mlflow.data.from_pandas(
                frame,
                source=source,
                targets="label",
                name=f"{dataset}-{split}",
                digest=digest[:16],
            )
            mlflow.log_input(data, context=context)


def _quiet_lightning() -> None:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_trainer(settings: Settings, precision: str, callbacks: list[Any], progress: bool) -> Any:
    import lightning as L

    cfg = settings.train
    if progress:  # on stderr, so that `--json` output on stdout stays parseable
        from lightning.pytorch.callbacks import RichProgressBar

        from citeops.tasks.model.module import EpochSummary

        callbacks = [*callbacks, RichProgressBar(console_kwargs={"stderr": True}), EpochSummary()]
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        precision=precision,
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def train_model(settings: Settings, progress: bool = True) -> TrainResult:
    """Fine-tune ``settings.model.base_model`` on the configured datasets and register it.

    Returns the run id, the registered model URI (``models:/<name>/<version>``), the
    version and the selected epoch's dev metrics. Sets ``settings.train.register_alias``
    (when set) on the new version.

    Raises:
        DataFileError, BaseModelError, TrainingError: clear, user-facing problems.
    """
    import lightning as L

    import mlflow
    from citeops.tasks.model.base import load_base
    from citeops.tasks.model.batching import class_weights
    from citeops.tasks.model.module import (
        BestWeights,
        ClaimDataModule,
        ClaimVerifierModule,
        MlflowEpochLogger,
        OptimConfig,
    )
    from citeops.tasks.model.registry import (
        ensure_experiment,
        log_verifier,
        register_version,
        save_hf_folder,
        set_alias,
    )

    started = time.perf_counter()
    data_cutoff = datetime.now(UTC)  # feedback ingested after this is new for the next run
    _quiet_lightning()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = settings.train
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    train, dev = load_training_data(settings)
    model, tokenizer = load_base(settings.model, seed=cfg.seed)
    model.train()  # from_pretrained returns eval mode: dropout would stay off
    weights = (
        class_weights([ex.label for ex in train], len(LABELS)) if cfg.class_weighted_loss else None
    )
    data = ClaimDataModule(
        tokenizer,
        train,
        dev,
        cfg.max_length,
        cfg.batch_size,
        cfg.eval_batch_size,
        cfg.bucket_size_multiplier,
        cfg.seed,
        cfg.num_workers,
    )
    module = ClaimVerifierModule(
        model,
        OptimConfig(cfg.learning_rate, cfg.weight_decay, cfg.layer_lr_decay, cfg.warmup_ratio),
        class_weights=weights,
        groups=data.groups,
    )
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    params = training_params(settings, precision)
    best = BestWeights(SELECTION_METRIC, "max")
    callbacks: list[Any] = [best, MlflowEpochLogger()]
    if dev:
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks.append(
            EarlyStopping(
                SELECTION_METRIC,
                mode="max",
                patience=cfg.early_stopping_patience,
                check_on_train_epoch_end=False,
                strict=False,  # max_steps may end training before the first validation
            )
        )
    trainer = build_trainer(settings, precision, callbacks, progress)

    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name="train") as run:
        mlflow.log_params(params)
        mlflow.log_params(
            {
                "train_examples": len(train),
                "dev_examples": len(dev),
                "feedback_examples": sum(ex.dataset == FEEDBACK_DATASET for ex in train),
                **{f"train_labels_{k}": v for k, v in label_counts(train).items()},
            }
        )
        log_dataset_inputs(settings, train, "train", "training")
        if dev:
            log_dataset_inputs(settings, dev, "dev", "validation")
        trainer.fit(module, datamodule=data)
        restored = best.restore(module)
        if dev and not restored:  # max_steps ended training before any validation
            trainer.validate(module, datamodule=data, verbose=False)
            best.best_metrics = dict(module.last_val_metrics)
        metrics = {k: float(v) for k, v in best.best_metrics.items()}
        mlflow.log_metrics({f"best_val_{k}": v for k, v in metrics.items()})
        wall = time.perf_counter() - started
        mlflow.log_metrics({"train_seconds": wall, "steps": float(trainer.global_step)})
        if best.best_epoch is not None:
            mlflow.log_metric("best_epoch", best.best_epoch)
        meta = {
            "labels": list(LABELS),
            "max_length": cfg.max_length,
            "base_model": settings.model.base_model,
            "run_id": run.info.run_id,
            "datasets": list(cfg.datasets),
        }
        with tempfile.TemporaryDirectory(prefix="citeops-model-") as tmp:
            folder = save_hf_folder(module.model, tokenizer, Path(tmp) / "hf_model", meta)
            logged_uri = log_verifier(folder)
    registered = register_version(settings, logged_uri, run.info.run_id)
    if cfg.include_feedback:
        from citeops.tasks.store.queries import mark_training

        mark_training(settings, at=data_cutoff, note=f"run {run.info.run_id}")
    if cfg.register_alias:
        set_alias(settings, registered.version, cfg.register_alias)
    return TrainResult(
        run_id=run.info.run_id,
        model_uri=registered.model_uri,
        model_version=registered.version,
        metrics=metrics,
        logged_model_uri=logged_uri,
        alias=cfg.register_alias,
        best_epoch=best.best_epoch,
        epochs_run=trainer.current_epoch,
        steps=int(trainer.global_step),
        train_examples=len(train),
        dev_examples=len(dev),
        wall_seconds=time.perf_counter() - started,
        params=params,
    )
