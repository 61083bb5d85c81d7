"""Fine-tune the verifier and track it in MLflow (:func:`fit_candidate`), then register it
as a new version (:func:`register_candidate`); :func:`train_model` does both for ``citeops
train``, the ``retrain`` flow puts its gate between them.

Fitting trains with Lightning (length-bucketed batches, AdamW with warm-up and linear
decay, optional class weights, bf16 autocast where it is fast), selects the epoch with the
best dev macro F1 (early stopping on it), and logs parameters, per-epoch metrics, dataset
digests, resources (device, wall time, device-hours, peak memory, estimated cost) and the
model to one MLflow run.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.classifier.preprocess import META_KEY, EvidenceSelection
from citeops.tasks.data.multivers import (
    LABELS,
    Example,
    claims_file,
    corpus_file,
    files_digest,
    label_counts,
)
from citeops.tasks.train.training_set import (
    FEEDBACK_DATASET,
    TrainingError,
    TrainingSet,
    build_training_set,
    rows_digest,
)

if TYPE_CHECKING:
    from citeops.configs.settings import ModelSettings, Settings
    from citeops.tasks.registry.register import RegisteredModel


# the mean over datasets of dev macro F1: what `citeops evaluate` reports on the test sets
SELECTION_METRIC = "val_f1_macro_by_dataset"


__all__ = [
    "FEEDBACK_DATASET",
    "Candidate",
    "TrainResult",
    "TrainingError",
    "fit_candidate",
    "load_training_data",
    "register_candidate",
    "train_model",
]
log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A fitted model logged in an MLflow run, not yet registered (``logged_model_uri``
    is ``None`` for a run that logged no model: a recipe-search trial)."""

    run_id: str
    logged_model_uri: str | None
    metrics: dict[str, float]
    best_epoch: int | None = None
    epochs_run: int = 0
    steps: int = 0
    train_examples: int = 0
    dev_examples: int = 0
    wall_seconds: float = 0.0
    resources: dict[str, float | str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        return float(self.resources.get("estimated_cost_usd", 0.0))


@dataclass
class TrainResult(Candidate):
    """A candidate registered as a version (``citeops train``); ``metrics`` are the
    selected epoch's dev metrics."""

    model_uri: str = ""  # models:/<name>/<version>
    model_version: str = ""
    alias: str | None = None

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
    """Train and dev examples (see :func:`build_training_set`; the hold-out left out)."""
    data = build_training_set(settings)
    return data.train, data.dev


def training_params(settings: Settings, precision: str) -> dict[str, Any]:
    """Everything that defines the run, flat, for ``mlflow.log_params``."""
    cfg = settings.train
    return {
        "base_model": settings.model.base_model,
        "head": settings.model.head,
        "init_from": settings.train.init_from,
        "datasets": ",".join(cfg.datasets),
        "epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "max_examples": cfg.max_examples,
        "max_eval_examples": cfg.max_eval_examples,
        "max_length": cfg.max_length,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "layer_lr_decay": cfg.layer_lr_decay,
        "head_learning_rate": cfg.head_learning_rate,
        "head_warm_start": warms_head(settings),
        "weight_decay": cfg.weight_decay,
        "warmup_ratio": cfg.warmup_ratio,
        "class_weighted_loss": cfg.class_weighted_loss,
        "augment_rationale_only": cfg.augment_rationale_only,
        "augment_rationale_removed": cfg.augment_rationale_removed,
        "precision": precision,
        "bucket_size_multiplier": cfg.bucket_size_multiplier,
        "early_stopping_patience": cfg.early_stopping_patience,
        "max_minutes": cfg.max_minutes,
        "threads": cfg.threads,
        "seed": cfg.seed,
        **{f"evidence_{k}": v for k, v in evidence_selection(settings).to_meta().items()},
    }


def warms_head(settings: Settings) -> bool:
    """Whether the head is fitted on frozen features first (``train.head_warm_start``):
    not when training continues from a registered model, whose head is trained."""
    return settings.train.head_warm_start and not settings.train.init_from


def evidence_selection(settings: Settings) -> EvidenceSelection:
    """The evidence selection that a model trained with ``settings`` carries."""
    return EvidenceSelection(**settings.model.evidence_selection.model_dump())


def log_dataset_inputs(
    settings: Settings,
    examples: Sequence[Example],
    split: str,
    context: str,
    file_digests: dict[str, str] | None = None,
) -> None:
    """``mlflow.log_input`` for each dataset in ``examples``: digest = SHA-256 of its files
    (taken from ``file_digests``, keyed ``<dataset>-<split>``, when the training set
    already computed it)."""
    import pandas as pd

    import mlflow

    for dataset in sorted({ex.dataset for ex in examples}):
        rows = [ex for ex in examples if ex.dataset == dataset]
        if dataset == FEEDBACK_DATASET:  # curated feedback: no files, digest of the rows
            # MLflow resolves only known source kinds: name where the feedback came from
            source, digest = f"{str(settings.log_root).rstrip('/')}/feedback", rows_digest(rows)
        else:
            paths = [
                corpus_file(settings.data_dir, dataset),
                claims_file(settings.data_dir, dataset, split),
            ]
            known = (file_digests or {}).get(f"{dataset}-{split}")
            source, digest = str(paths[1]), known or files_digest(paths)
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
    live_bar = progress and sys.stderr.isatty()
    if progress:  # on stderr, so that `--json` output on stdout stays parseable
        from lightning.pytorch.callbacks import RichProgressBar

        from citeops.tasks.train.module import EpochSummary, StepProgress

        # a live bar on a terminal; elsewhere (a log file, CI) a plain line every 30 s
        bar = RichProgressBar(console_kwargs={"stderr": True}) if live_bar else StepProgress()
        callbacks = [*callbacks, bar, EpochSummary()]
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=precision,
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=live_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resources_used(settings: Settings, trainer: Any, wall_seconds: float) -> dict[str, float | str]:
    """Device type and count, wall time, device-hours, peak memory and the estimated cost."""
    import torch

    device = trainer.strategy.root_device.type
    count = int(trainer.num_devices)
    hours = wall_seconds / 3600.0 * count
    out: dict[str, float | str] = {
        "device_type": device,
        "device_count": float(count),
        "wall_seconds": wall_seconds,
        "device_hours": hours,
        "gpu_hours": hours if device == "cuda" else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "estimated_cost_usd": hours * settings.train.cost_per_device_hour,
    }
    if device == "cuda":
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


@contextmanager
def initial_weights(settings: Settings) -> Iterator[ModelSettings]:
    """The model settings to load the starting weights from: ``model`` as it is, or, with
    ``train.init_from`` (a registered model URI), a copy pointing at that model's
    downloaded Hugging Face folder, which lives for the block.

    Raises:
        ModelLoadError: ``train.init_from`` does not resolve to a model.
    """
    uri = settings.train.init_from
    if not uri:
        yield settings.model
        return
    import mlflow
    from citeops.tasks.classifier.artifact import ModelLoadError, find_hf_dir
    from citeops.tasks.registry.register import client

    client(settings)
    with tempfile.TemporaryDirectory(prefix="citeops-init-") as tmp:
        try:
            root = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        except Exception as error:  # noqa: BLE001 - MLflow raises many kinds
            raise ModelLoadError(f"train.init_from {uri!r} cannot be loaded: {error}") from None
        folder = find_hf_dir(Path(root))
        log.info("starting from the weights of %s", uri)
        yield settings.model.model_copy(update={"base_model": str(folder)})


def fit_candidate(
    settings: Settings,
    data: TrainingSet | None = None,
    progress: bool = True,
    *,
    run_name: str = "train",
    tags: dict[str, str] | None = None,
    log_model: bool = True,
) -> Candidate:
    """Fine-tune ``settings.model.base_model`` on ``data`` (default: the configured
    datasets and feedback, :func:`build_training_set`) and log it in one MLflow run
    (named ``run_name``, with ``tags``; the model itself only when ``log_model``).

    Registers nothing: the caller decides (:func:`register_candidate`).

    Raises:
        DataFileError, BaseModelError, TrainingError: clear, user-facing problems.
    """
    import lightning as L

    import mlflow
    from citeops.tasks.classifier.artifact import save_hf_folder
    from citeops.tasks.classifier.base import load_base
    from citeops.tasks.classifier.preprocess import EvidenceSelector
    from citeops.tasks.data.augment import augment
    from citeops.tasks.registry.register import ensure_experiment, log_verifier
    from citeops.tasks.train.batching import class_weights
    from citeops.tasks.train.module import (
        BestWeights,
        ClaimDataModule,
        ClaimVerifierModule,
        HeadWarmStart,
        MlflowEpochLogger,
        OptimConfig,
    )

    started = time.perf_counter()
    _quiet_lightning()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = settings.train
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    data = data or build_training_set(settings)
    augmented = augment(
        data.train, cfg.augment_rationale_only, cfg.augment_rationale_removed, cfg.seed
    )
    train, dev = [*data.train, *augmented], data.dev
    with initial_weights(settings) as model_settings:
        model, tokenizer = load_base(model_settings, seed=cfg.seed)
    model.train()  # from_pretrained returns eval mode: dropout would stay off
    weights = (
        class_weights([ex.label for ex in train], len(LABELS)) if cfg.class_weighted_loss else None
    )
    datamodule = ClaimDataModule(
        tokenizer,
        train,
        dev,
        cfg.max_length,
        cfg.batch_size,
        cfg.eval_batch_size,
        cfg.bucket_size_multiplier,
        cfg.seed,
        cfg.num_workers,
        selector=EvidenceSelector(evidence_selection(settings), tokenizer, cfg.max_length),
    )
    module = ClaimVerifierModule(
        model,
        OptimConfig(
            cfg.learning_rate,
            cfg.weight_decay,
            cfg.layer_lr_decay,
            cfg.warmup_ratio,
            cfg.head_learning_rate,
        ),
        class_weights=weights,
        groups=datamodule.groups,
    )
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    params = training_params(settings, precision)
    best = BestWeights(SELECTION_METRIC, "max")
    callbacks: list[Any] = [best, MlflowEpochLogger()]
    if warms_head(settings):
        callbacks.insert(0, HeadWarmStart(cfg.class_weighted_loss, cfg.eval_batch_size))
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
    log.info(
        "fitting %s on %d examples (%d dev), precision %s",
        settings.model.base_model,
        len(train),
        len(dev),
        precision,
    )

    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags({"citeops.kind": "training", **(tags or {})})
        mlflow.log_params(params)
        mlflow.log_params(
            {
                "train_examples": len(train),
                "dev_examples": len(dev),
                "feedback_examples": data.feedback_examples,
                "augmented_examples": len(augmented),
                "holdout_examples": len(data.holdout),
                **{f"train_labels_{k}": v for k, v in label_counts(train).items()},
            }
        )
        log_dataset_inputs(settings, train, "train", "training", data.digests)
        if dev:
            log_dataset_inputs(settings, dev, "dev", "validation", data.digests)
        trainer.fit(module, datamodule=datamodule)
        restored = best.restore(module)
        if dev and not restored:  # max_steps ended training before any validation
            trainer.validate(module, datamodule=datamodule, verbose=False)
            best.best_metrics = dict(module.last_val_metrics)
        metrics = {k: float(v) for k, v in best.best_metrics.items()}
        mlflow.log_metrics({f"best_val_{k}": v for k, v in metrics.items()})
        wall = time.perf_counter() - started
        resources = resources_used(settings, trainer, wall)
        mlflow.log_metrics(
            {"train_seconds": wall, "steps": float(trainer.global_step)}
            | {k: v for k, v in resources.items() if isinstance(v, float)}
        )
        mlflow.set_tag("device_type", str(resources["device_type"]))
        if best.best_epoch is not None:
            mlflow.log_metric("best_epoch", best.best_epoch)
        logged_uri = None
        if log_model:
            meta = {
                "labels": list(LABELS),
                "max_length": cfg.max_length,
                "base_model": settings.model.base_model,
                "run_id": run.info.run_id,
                "datasets": list(cfg.datasets),
                META_KEY: evidence_selection(settings).to_meta(),
            }
            with tempfile.TemporaryDirectory(prefix="citeops-model-") as tmp:
                folder = save_hf_folder(module.model, tokenizer, Path(tmp) / "hf_model", meta)
                logged_uri = log_verifier(folder)
    log.info("fitted in %.0f s: dev %s", wall, {k: round(v, 3) for k, v in metrics.items()})
    return Candidate(
        run_id=run.info.run_id,
        logged_model_uri=logged_uri,
        metrics=metrics,
        best_epoch=best.best_epoch,
        epochs_run=trainer.current_epoch,
        steps=int(trainer.global_step),
        train_examples=len(train),
        dev_examples=len(dev),
        wall_seconds=time.perf_counter() - started,
        resources=resources,
        params=params,
    )


def register_candidate(
    settings: Settings, candidate: Candidate, alias: str | None = None
) -> RegisteredModel:
    """Register the candidate's logged model as a new version; point ``alias`` at it."""
    from citeops.tasks.registry.register import register_version, set_alias

    if candidate.logged_model_uri is None:
        raise TrainingError(f"run {candidate.run_id} logged no model: nothing to register")
    registered = register_version(settings, candidate.logged_model_uri, candidate.run_id)
    if alias:
        set_alias(settings, registered.version, alias)
    log.info("registered %s%s", registered.model_uri, f" as @{alias}" if alias else "")
    return registered


def train_model(settings: Settings, progress: bool = True) -> TrainResult:
    """Fit, register (alias ``train.register_alias``) and mark the store: ``citeops train``.

    Returns the run id, the registered model URI (``models:/<name>/<version>``), the
    version and the selected epoch's dev metrics.

    Raises:
        DataFileError, BaseModelError, TrainingError: clear, user-facing problems.
    """
    data = build_training_set(settings)
    candidate = fit_candidate(settings, data, progress)
    registered = register_candidate(settings, candidate, settings.train.register_alias)
    if settings.train.include_feedback:
        from citeops.tasks.store.queries import mark_training

        mark_training(settings, at=data.cutoff, note=f"run {candidate.run_id}")
    return TrainResult(
        **vars(candidate),
        model_uri=registered.model_uri,
        model_version=registered.version,
        alias=settings.train.register_alias,
    )
