"""Lightning wrappers: the classifier module, the data module and the callbacks training uses.

The work lives in plain functions (:mod:`tasks.train.batching`, :mod:`tasks.train.optim`,
:mod:`tasks.classifier.stats`); this file only adapts them to Lightning. Import it lazily:
``import lightning`` costs seconds.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from citeops.tasks.classifier.preprocess import EvidenceSelector
from citeops.tasks.classifier.stats import classification_metrics, per_group_f1
from citeops.tasks.data.multivers import LABELS, Example
from citeops.tasks.train.batching import (
    BucketBatchSampler,
    EncodedDataset,
    collate_padded,
    encode_examples,
    sorted_batches,
)
from citeops.tasks.train.optim import build_optimizer

progress = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    layer_lr_decay: float = 1.0
    warmup_ratio: float = 0.1
    head_learning_rate: float | None = None  # None: learning_rate (with its layer decay)


class ClaimVerifierModule(L.LightningModule):
    """A Hugging Face sequence classifier trained with (optionally class-weighted) CE loss.

    Logs ``train_loss`` per step/epoch and, after each validation epoch, ``val_loss`` and
    ``val_<metric>`` for every metric of :func:`classification_metrics`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimConfig,
        class_weights: Sequence[float] | None = None,
        labels: Sequence[str] = LABELS,
        groups: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self.labels = tuple(labels)
        self.groups = tuple(groups)
        weights = torch.tensor(list(class_weights), dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_losses: list[tuple[float, int]] = []
        self._val_groups: list[torch.Tensor] = []
        self.last_val_metrics: dict[str, float] = {}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "groups")}
        return self.model(**inputs).logits

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), labels, weight=self.class_weights)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch), batch["labels"])
        size = len(batch["labels"])
        self.log(
            "train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=size,
            # DDP: the mean over the ranks' shards (a no-op on one device; Lightning warns
            # when a DDP strategy with a single rank logs without it)
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch).float()
        loss = self._loss(logits, batch["labels"])
        self._val_probs.append(torch.softmax(logits, dim=-1).cpu())
        self._val_targets.append(batch["labels"].cpu())
        self._val_losses.append((float(loss), len(batch["labels"])))
        if "groups" in batch:
            self._val_groups.append(batch["groups"].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_targets:
            return
        probs = torch.cat(self._val_probs)
        targets = torch.cat(self._val_targets)
        total = sum(n for _, n in self._val_losses)
        metrics = {"loss": sum(v * n for v, n in self._val_losses) / total}
        metrics.update(classification_metrics(probs, targets, self.labels))
        groups = torch.cat(self._val_groups) if self._val_groups else None
        metrics.update(per_group_f1(probs, targets, groups, self.groups, self.labels))
        self.last_val_metrics = metrics
        for name, value in metrics.items():
            # every DDP rank scores the whole dev set: syncing averages equal values
            self.log(
                f"val_{name}",
                value,
                prog_bar=name in ("loss", "f1_macro_by_dataset"),
                sync_dist=True,
            )
        self._val_probs.clear()
        self._val_targets.clear()
        self._val_losses.clear()
        self._val_groups.clear()

    def configure_optimizers(self) -> dict[str, Any]:
        total = int(self.trainer.estimated_stepping_batches)
        optimizer, scheduler = build_optimizer(
            self.model,
            self.optim.learning_rate,
            self.optim.weight_decay,
            self.optim.layer_lr_decay,
            self.optim.warmup_ratio,
            total,
            self.optim.head_learning_rate,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class ClaimDataModule(L.LightningDataModule):
    """Tokenises train/dev examples once; length-bucketed training batches, sorted dev ones."""

    def __init__(
        self,
        tokenizer: Any,
        train_examples: Sequence[Example],
        dev_examples: Sequence[Example],
        max_length: int,
        batch_size: int,
        eval_batch_size: int,
        bucket_size_multiplier: int = 50,
        seed: int = 42,
        num_workers: int = 0,
        selector: EvidenceSelector | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.selector = selector  # the model's evidence selection; None: whole evidence
        self.train_examples = list(train_examples)
        self.dev_examples = list(dev_examples)
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.bucket_size_multiplier = bucket_size_multiplier
        self.seed = seed
        self.num_workers = num_workers
        self.groups = tuple(dict.fromkeys(ex.dataset for ex in self.dev_examples))
        self.train_set: EncodedDataset | None = None
        self.dev_set: EncodedDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            select = self.selector.select_many if self.selector else None
            self.train_set = EncodedDataset(
                encode_examples(self.tokenizer, self.train_examples, self.max_length, select=select)
            )
            self.dev_set = EncodedDataset(
                encode_examples(
                    self.tokenizer,
                    self.dev_examples,
                    self.max_length,
                    groups=self.groups,
                    select=select,
                )
            )

    @property
    def _collate(self):  # noqa: ANN202
        return partial(collate_padded, pad_token_id=self.tokenizer.pad_token_id or 0)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        sampler = BucketBatchSampler(
            self.train_set.lengths, self.batch_size, self.bucket_size_multiplier, self.seed
        )
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        assert self.dev_set is not None
        return DataLoader(
            self.dev_set,
            batch_sampler=sorted_batches(self.dev_set.lengths, self.eval_batch_size),
            collate_fn=partial(self._collate, with_groups=True),
            num_workers=self.num_workers,
        )


class HeadWarmStart(L.Callback):
    """Before the first step, fit a siamese model's head on the frozen encoder's features
    of the training pairs (:func:`tasks.classifier.siamese.fit_head`); other heads: nothing."""

    def __init__(self, class_weighted: bool, batch_size: int = 64) -> None:
        self.class_weighted = class_weighted
        self.batch_size = batch_size

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from citeops.tasks.classifier.siamese import SiameseBertForSequenceClassification
        from citeops.tasks.train.warm_start import fit_head_on_pairs

        model = getattr(pl_module, "model", None)
        data = getattr(trainer, "datamodule", None)
        if not isinstance(model, SiameseBertForSequenceClassification) or data is None:
            return
        data.setup("fit")
        pad = data.tokenizer.pad_token_id or 0
        bf16 = "bf16" in str(trainer.precision)
        fit_head_on_pairs(
            model, data.train_set.pairs, pad, self.batch_size, self.class_weighted, bf16
        )


class PruneOnDev(L.Callback):
    """After each epoch's validation, report the dev selection score to an Optuna trial
    (``citeops tune``) and stop the fit when the study's pruner says so."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None  # the epoch after which the fit was stopped

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        epoch = int(trainer.current_epoch)
        self.trial.report(float(value), step=epoch)
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if not last and self.trial.should_prune():  # a fit that ran its course is complete
            self.pruned_at = epoch
            trainer.should_stop = True


class BestWeights(L.Callback):
    """Keeps a copy of the weights at the best ``monitor`` value; restores them at the end."""

    def __init__(self, monitor: str = "val_f1_macro", mode: str = "max") -> None:
        self.monitor = monitor
        self.mode = mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}
        self._state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        score = float(value)
        better = self.best_score is None or (
            score > self.best_score if self.mode == "max" else score < self.best_score
        )
        if better:
            self.best_score = score
            self.best_epoch = trainer.current_epoch
            self.best_metrics = dict(getattr(pl_module, "last_val_metrics", {}))
            self._state = copy.deepcopy(pl_module.state_dict())

    def restore(self, pl_module: L.LightningModule) -> bool:
        """Load the best weights back; False when no validation ever ran."""
        if self._state is None:
            return False
        pl_module.load_state_dict(self._state)
        return True


class MlflowEpochLogger(L.Callback):
    """Logs per-epoch train loss and validation metrics to the active MLflow run."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import mlflow

        if trainer.global_rank != 0:  # DDP workers have no run: rank 0 logs
            return
        value = trainer.callback_metrics.get("train_loss_epoch")
        if value is not None:
            mlflow.log_metric("train_loss", float(value), step=trainer.current_epoch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import mlflow

        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.global_rank != 0:
            return
        metrics = getattr(pl_module, "last_val_metrics", {})
        if metrics:
            mlflow.log_metrics(
                {f"val_{k}": float(v) for k, v in metrics.items()}, step=trainer.current_epoch
            )


class EpochSummary(L.Callback):
    """One line per validation epoch (train loss, dev loss and macro F1), logged (on the
    terminal through the entry point's handler, in the Prefect run log)."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.global_rank != 0:
            return
        metrics = getattr(pl_module, "last_val_metrics", {})
        train_loss = trainer.callback_metrics.get("train_loss_epoch")
        parts = [f"epoch {trainer.current_epoch}", f"step {trainer.global_step}"]
        if train_loss is not None:
            parts.append(f"train_loss {float(train_loss):.4f}")
        parts += [
            f"val_{k} {metrics[k]:.4f}"
            for k in ("loss", "f1_macro", "f1_macro_by_dataset", "accuracy")
            if k in metrics
        ]
        progress.info("  ".join(parts))


class StepProgress(L.Callback):
    """One plain progress line logged every ``interval_seconds`` of fitting (step of the
    epoch, examples/s, time left in the epoch): the rich bar only draws on a terminal, and
    a log file otherwise shows nothing for minutes."""

    def __init__(self, interval_seconds: float = 30.0) -> None:
        self.interval_seconds = interval_seconds
        self._epoch_start = 0.0
        self._last = 0.0
        self._examples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last = time.monotonic()
        self._examples = 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._examples += int(batch["labels"].shape[0]) if "labels" in batch else 0
        now = time.monotonic()
        if now - self._last < self.interval_seconds:
            return
        self._last = now
        done, total = batch_idx + 1, trainer.num_training_batches
        elapsed = now - self._epoch_start
        line = f"epoch {trainer.current_epoch}  batch {done}/{total}"
        if self._examples:
            line += f"  {self._examples / elapsed:.1f} examples/s"
        if isinstance(total, int) and 0 < done < total:
            line += f"  ~{elapsed / done * (total - done) / 60:.1f} min left in the epoch"
        progress.info(line)
