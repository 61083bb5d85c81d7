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

from citeops.tasks.classifier.artifact import (
    CLASS_OFFSETS_KEY,
    ModelLoadError,
    find_hf_dir,
    save_hf_folder,
)
from citeops.tasks.classifier.base import load_base, set_attention_dropout
from citeops.tasks.classifier.preprocess import META_KEY, EvidenceSelection, EvidenceSelector
from citeops.tasks.data.augment import augment, oversample_rare_classes, self_support
from citeops.tasks.data.multivers import (
    LABELS,
    Example,
    claims_file,
    corpus_file,
    files_digest,
    label_counts,
)
from citeops.tasks.inference.loading import download_model
from citeops.tasks.registry.describe import (
    TRAINING_RUN_TAG,
    VERSION_TAG,
    name_run,
    set_section,
    tag_version,
)
from citeops.tasks.registry.register import log_verifier, register_version, set_alias
from citeops.tasks.tracking import ensure_experiment, require_fluent_tracking
from citeops.tasks.train.batching import class_weights
from citeops.tasks.train.ddp import ddp_ranks, world_size
from citeops.tasks.train.offsets import OffsetResult, tune_and_bake
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


MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value


def training_params(settings: Settings, precision: str) -> dict[str, Any]:
    """Everything that defines the run, flat, for ``mlflow.log_params``: every ``train``
    and ``model`` setting (from ``model_dump()``, so a new setting is logged without being
    named here) under its own name (``learning_rate``, ``base_model``; a ``model`` field
    whose name ``train`` also has is ``model.<name>``; nested fields ``<name>.<key>``),
    with ``precision`` and ``head_warm_start`` the values in effect rather than asked for.
    """
    train = flat_params(settings.train.model_dump())
    model = {
        (f"model.{key}" if key in train else key): value
        for key, value in flat_params(settings.model.model_dump()).items()
    }
    effective = {"precision": precision, "head_warm_start": warms_head(settings)}
    return train | model | effective


def flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``values`` flattened for MLflow: nested dicts as ``<name>.<key>``, sequences joined
    with commas, each value cut to MLflow's :data:`MAX_PARAM_CHARS`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flat_params(value, f"{name}.")
        elif isinstance(value, list | tuple):
            out[name] = ",".join(map(str, value))[:MAX_PARAM_CHARS]
        else:
            out[name] = value if not isinstance(value, str) else value[:MAX_PARAM_CHARS]
    return out


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


def trainer_kwargs(settings: Settings, precision: str, callbacks: list[Any]) -> dict[str, Any]:
    """The ``lightning.Trainer`` arguments of ``settings`` (no progress bar or its
    callbacks): built without a trainer, so a profile's recipe is checked on any machine.
    Under a ``ddp`` strategy the devices are the ranks :func:`world_size` starts (``auto``:
    every visible GPU)."""
    cfg = settings.train
    ddp = str(cfg.strategy).startswith("ddp")
    return {
        "accelerator": cfg.accelerator,
        "devices": world_size(settings) if ddp else cfg.devices,
        "strategy": cfg.strategy,
        "precision": precision,
        "max_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "max_time": {"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        "callbacks": callbacks,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "deterministic": False,
        # under DDP the bucketed batch sampler shards itself (tasks/train/batching.py)
        "use_distributed_sampler": False,
    }


def build_trainer(settings: Settings, precision: str, callbacks: list[Any], progress: bool) -> Any:
    import lightning as L

    live_bar = progress and sys.stderr.isatty()
    if progress:  # on stderr, so that `--json` output on stdout stays parseable
        from lightning.pytorch.callbacks import RichProgressBar

        from citeops.tasks.train.module import EpochSummary, StepProgress

        # a live bar on a terminal; elsewhere (a log file, CI) a plain line every 30 s
        bar = RichProgressBar(console_kwargs={"stderr": True}) if live_bar else StepProgress()
        callbacks = [*callbacks, bar, EpochSummary()]
    kwargs = trainer_kwargs(settings, precision, callbacks)
    return L.Trainer(**kwargs, enable_progress_bar=live_bar)


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
        "estimated_cost_usd": hours * settings.cost.device_hour_rate(device),
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

    with tempfile.TemporaryDirectory(prefix="citeops-init-") as tmp:
        try:
            root, _ = download_model(uri, settings, Path(tmp))
        except Exception as error:  # noqa: BLE001 - MLflow raises many kinds
            raise ModelLoadError(f"train.init_from {uri!r} cannot be loaded: {error}") from None
        folder = find_hf_dir(root)
        log.info("starting from the weights of %s", uri)
        yield settings.model.model_copy(update={"base_model": str(folder)})


@dataclass
class FitSetup:
    """Everything one fit needs, built (:func:`build_fit`) before anything is fitted."""

    settings: Settings
    data: TrainingSet
    train: list[Example]  # the training set's train part plus its augmentations
    augmented: int
    tokenizer: Any
    module: Any  # ClaimVerifierModule
    datamodule: Any  # ClaimDataModule
    trainer: Any  # lightning.Trainer
    best: Any  # BestWeights
    precision: str
    offsets: OffsetResult | None = None  # set by fit() with train.tune_class_offsets

    @property
    def dev(self) -> list[Example]:
        return self.data.dev


def prepare_process(settings: Settings) -> None:
    """Process-wide training set-up: quiet Lightning, tokenizer threads, torch threads
    (``train.threads``) and every seed."""
    import lightning as L

    _quiet_lightning()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if settings.train.threads:
        import torch

        torch.set_num_threads(settings.train.threads)
    L.seed_everything(settings.train.seed, verbose=False)


def build_module(settings: Settings, train: Sequence[Example], dev: Sequence[Example]) -> Any:
    """The starting weights (:func:`initial_weights`) wrapped in the Lightning module and
    data module; ``(module, datamodule, tokenizer)``."""
    from citeops.tasks.train.module import ClaimDataModule, ClaimVerifierModule, OptimConfig

    cfg = settings.train
    with initial_weights(settings) as model_settings:
        model, tokenizer = load_base(model_settings, seed=cfg.seed)
    if cfg.attention_dropout is not None:
        set_attention_dropout(model, cfg.attention_dropout)
    model.train()  # from_pretrained returns eval mode: dropout would stay off
    labels = [ex.label for ex in train]
    weights = class_weights(labels, len(LABELS)) if cfg.class_weighted_loss else None
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
    optim = OptimConfig(
        cfg.learning_rate,
        cfg.weight_decay,
        cfg.layer_lr_decay,
        cfg.warmup_ratio,
        cfg.head_learning_rate,
    )
    module = ClaimVerifierModule(model, optim, class_weights=weights, groups=datamodule.groups)
    return module, datamodule, tokenizer


def build_callbacks(settings: Settings, with_dev: bool) -> tuple[Any, list[Any]]:
    """The best-epoch keeper and the callbacks around it (head warm start, per-epoch
    MLflow metrics, early stopping on :data:`SELECTION_METRIC` when there is a dev set)."""
    from citeops.tasks.train.module import BestWeights, HeadWarmStart, MlflowEpochLogger

    cfg = settings.train
    best = BestWeights(SELECTION_METRIC, "max")
    callbacks: list[Any] = [best, MlflowEpochLogger()]
    if warms_head(settings):
        callbacks.insert(0, HeadWarmStart(cfg.class_weighted_loss, cfg.eval_batch_size))
    if with_dev:
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
    return best, callbacks


def build_fit(
    settings: Settings, data: TrainingSet, progress: bool, extra: list[Any] | None = None
) -> FitSetup:
    """Seeds, augmented examples, weights, modules and trainer (with the ``extra``
    callbacks) for one fit."""

    cfg = settings.train
    prepare_process(settings)
    augmented = augment(
        data.train, cfg.augment_rationale_only, cfg.augment_rationale_removed, cfg.seed
    ) + self_support(data.train, cfg.augment_self_support, cfg.seed)
    augmented += oversample_rare_classes(data.train, cfg.min_class_share, cfg.seed)
    train = [*data.train, *augmented]
    module, datamodule, tokenizer = build_module(settings, train, data.dev)
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    best, callbacks = build_callbacks(settings, bool(data.dev))
    trainer = build_trainer(settings, precision, [*callbacks, *(extra or [])], progress)
    return FitSetup(
        settings,
        data,
        train,
        len(augmented),
        tokenizer,
        module,
        datamodule,
        trainer,
        best,
        precision,
    )


def fit(setup: FitSetup) -> dict[str, float]:
    """Train, restore the best epoch's weights and, with ``train.tune_class_offsets``, bake
    the dev-tuned class offsets into the output bias (:mod:`tasks.train.offsets`); the
    selected epoch's dev metrics (with the offsets, where they were applied)."""
    trainer, module, best = setup.trainer, setup.module, setup.best
    trainer.fit(module, datamodule=setup.datamodule)
    restored = best.restore(module)
    alone = trainer.world_size == 1  # a validation now would wait for the DDP workers
    if setup.dev and not restored and alone:  # max_steps ended training before validation
        trainer.validate(module, datamodule=setup.datamodule, verbose=False)
        best.best_metrics = dict(module.last_val_metrics)
    metrics = {k: float(v) for k, v in best.best_metrics.items()}
    if setup.settings.train.tune_class_offsets and setup.dev:
        setup.offsets = tune_and_bake(module, setup.datamodule, LABELS)
        if setup.offsets.applied:
            metrics |= setup.offsets.metrics
    return metrics


def log_fit_inputs(setup: FitSetup, params: dict[str, Any]) -> None:
    """Parameters, example counts and dataset digests of the active run."""
    import mlflow

    data, train = setup.data, setup.train
    mlflow.log_params(params)
    mlflow.log_params(
        {
            "train_examples": len(train),
            "dev_examples": len(setup.dev),
            "feedback_examples": data.feedback_examples,
            "augmented_examples": setup.augmented,
            "holdout_examples": len(data.holdout),
            **data.left_out_params(),
            **{f"train_labels_{k}": v for k, v in label_counts(train).items()},
        }
    )
    log_dataset_inputs(setup.settings, train, "train", "training", data.digests)
    if setup.dev:
        log_dataset_inputs(setup.settings, setup.dev, "dev", "validation", data.digests)


def log_fit_outcome(
    setup: FitSetup, metrics: dict[str, float], wall: float
) -> dict[str, float | str]:
    """Best dev metrics, steps, best epoch and resources into the active run; the
    resources (:func:`resources_used`)."""
    import mlflow

    trainer = setup.trainer
    mlflow.log_metrics({f"best_val_{k}": v for k, v in metrics.items()})
    resources = resources_used(setup.settings, trainer, wall)
    mlflow.log_metrics(
        {"train_seconds": wall, "steps": float(trainer.global_step)}
        | {k: v for k, v in resources.items() if isinstance(v, float)}
    )
    mlflow.set_tag("device_type", str(resources["device_type"]))
    if setup.offsets is not None:
        mlflow.log_params(setup.offsets.mlflow_params())
        mlflow.log_metrics(
            {
                "dev_f1_macro_by_dataset_before_offsets": setup.offsets.dev_before,
                "dev_f1_macro_by_dataset_after_offsets": setup.offsets.dev_after,
            }
        )
    if setup.best.best_epoch is not None:
        mlflow.log_metric("best_epoch", setup.best.best_epoch)
    return resources


def recipe_meta(settings: Settings) -> dict[str, Any]:
    """The ``citeops.json`` entries a model trained with ``settings`` carries: labels, input
    length, base model, datasets and evidence selection (the serving path reads the last
    two to prepare its inputs)."""
    return {
        "labels": list(LABELS),
        "max_length": settings.train.max_length,
        "base_model": settings.model.base_model,
        "datasets": list(settings.train.datasets),
        META_KEY: evidence_selection(settings).to_meta(),
    }


def log_fitted_model(setup: FitSetup, run_id: str) -> str:
    """Save the fitted model with its ``citeops.json`` and log it in the active run; its
    logged model URI."""

    settings = setup.settings
    meta = recipe_meta(settings) | {"run_id": run_id}
    if setup.offsets is not None:
        meta[CLASS_OFFSETS_KEY] = setup.offsets.offsets
    with tempfile.TemporaryDirectory(prefix="citeops-model-") as tmp:
        folder = save_hf_folder(setup.module.model, setup.tokenizer, Path(tmp) / "hf_model", meta)
        return log_verifier(folder, settings=settings)


def fit_candidate(
    settings: Settings,
    data: TrainingSet | None = None,
    progress: bool = True,
    *,
    run_name: str = "train",
    tags: dict[str, str] | None = None,
    log_model: bool = True,
    callbacks: list[Any] | None = None,
) -> Candidate:
    """Fine-tune ``settings.model.base_model`` on ``data`` (default: the configured
    datasets and feedback, :func:`build_training_set`) and log it in one MLflow run
    (named ``run_name``, with ``tags``; the model itself only when ``log_model``); extra
    Lightning ``callbacks`` join the trainer's (rank 0 only).
    Builds (:func:`build_fit`), fits (:func:`fit`) and logs; the run is opened with
    MLflow's fluent API, so the entry point has pointed MLflow at the settings' store.

    Registers nothing: the caller decides (:func:`register_candidate`).

    Raises:
        DataFileError, BaseModelError, TrainingError: clear, user-facing problems.
        TrackingNotSet: MLflow's process default is not the settings' store.
    """
    import mlflow

    started = time.perf_counter()
    require_fluent_tracking(settings)
    data = data or build_training_set(settings)
    # with DDP this process is rank 0 and the workers only fit: one run, one model
    with ddp_ranks(settings, data) as ranks:
        setup = build_fit(settings, data, progress, callbacks)
        params = training_params(settings, setup.precision) | {"ddp_processes": ranks}
        log.info(
            "fitting %s on %d examples (%d dev), precision %s, %d process(es)",
            settings.model.base_model,
            len(setup.train),
            len(setup.dev),
            setup.precision,
            ranks,
        )
        experiment_id = ensure_experiment(settings)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.set_tags({"citeops.kind": "training", **(tags or {})})
            log_fit_inputs(setup, params)
            metrics = fit(setup)
            wall = time.perf_counter() - started
            resources = log_fit_outcome(setup, metrics, wall)
            logged_uri = log_fitted_model(setup, run.info.run_id) if log_model else None
    log.info("fitted in %.0f s: dev %s", wall, {k: round(v, 3) for k, v in metrics.items()})
    return Candidate(
        run_id=run.info.run_id,
        logged_model_uri=logged_uri,
        metrics=metrics,
        best_epoch=setup.best.best_epoch,
        epochs_run=setup.trainer.current_epoch,
        steps=int(setup.trainer.global_step),
        train_examples=len(setup.train),
        dev_examples=len(setup.dev),
        wall_seconds=time.perf_counter() - started,
        resources=resources,
        params=params,
    )


def register_candidate(
    settings: Settings, candidate: Candidate, alias: str | None = None
) -> RegisteredModel:
    """Register the candidate's logged model as a new version; point ``alias`` at it."""

    if candidate.logged_model_uri is None:
        raise TrainingError(f"run {candidate.run_id} logged no model: nothing to register")
    registered = register_version(settings, candidate.logged_model_uri, candidate.run_id)
    if alias:
        set_alias(settings, registered.version, alias)
    describe_trained(settings, registered.version, candidate, f"train v{registered.version}")
    log.info("registered %s%s", registered.model_uri, f" as @{alias}" if alias else "")
    return registered


def describe_trained(
    settings: Settings,
    version: str,
    candidate: Candidate,
    run_name: str,
    data: TrainingSet | None = None,
    trigger: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Name the training run ``run_name`` (its version is only known now), link run and
    version both ways (plus ``tags`` on both), and write the version description's
    "Trained" section: the run, the dev figures, the trigger and the data digests."""

    name_run(settings, candidate.run_id, run_name, {VERSION_TAG: version, **(tags or {})})
    tag_version(settings, version, {TRAINING_RUN_TAG: candidate.run_id, **(tags or {})})
    set_section(settings, version, "Trained", trained_text(candidate, run_name, data, trigger))


def trained_text(
    candidate: Candidate,
    run_name: str,
    data: TrainingSet | None = None,
    trigger: dict[str, Any] | None = None,
) -> str:
    """The "Trained" section of a version description (markdown)."""
    dev = ", ".join(f"{k} {v:.3f}" for k, v in sorted(candidate.metrics.items()) if "f1" in k)
    lines = [
        f"Training run `{run_name}` (`{candidate.run_id}`): {candidate.train_examples} train / "
        f"{candidate.dev_examples} dev examples, {candidate.steps} steps, "
        f"{candidate.wall_seconds:.0f} s, best epoch {candidate.best_epoch}.",
        "",
        f"Dev: {dev or 'no dev set'}.",
    ]
    if trigger:
        causes = ", ".join(trigger.get("causes", [])) or "none"
        reasons = "; ".join(trigger.get("reasons", [])) or "none given"
        lines += ["", f"Trigger: {causes} ({reasons})."]
    if data is not None:
        lines += ["", data.markdown()]
    return "\n".join(lines)


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
