"""Settings of the classifier and of what makes it: the model, training, the recipe search
and the benchmark evaluation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from citeops.configs.base import Section


class EvidenceSelectionSettings(Section):
    """Which evidence sentences a newly trained model sees (recorded in the model, so
    evaluation, the gate, drift and serving apply the same; see
    tasks/classifier/preprocess.py).

    BM25 keeps a rationale sentence of SciFact dev as often as similarity (0.70 vs 0.73 at
    length 128) at a few tenths of a per cent of the cost, and gave the best dev macro F1
    of the methods tried (BENCHMARKS.md, evidence selection).
    """

    method: Literal["off", "lead", "bm25", "similarity"] = "bm25"
    """How sentences are chosen: off, lead (document order), bm25, or similarity (the
    embedded sentence encoder)."""
    budget_tokens: int | None = Field(None, ge=8)
    """Evidence tokens kept; None fills what `model.max_length` leaves beside the claim."""
    lead_sentences: int = Field(0, ge=0)
    """Leading sentences always kept first (1 keeps Citation-Integrity's rationale, its
    first sentence, but scored lower on dev)."""


class ModelSettings(Section):
    """The classifier: which base model, and how pairs are tokenised. The labels are
    fixed by the data contract (SUPPORT, NEI, REFUTE)."""

    base_model: str = "minilm"
    """Base model: minilm, tiny (the random test BERT), or a Hugging Face id or folder."""
    head: Literal["cross", "siamese"] = "cross"
    """Classifier head: cross (evidence and claim read together; any architecture) or
    siamese (each side encoded on its own; BERT-family bases)."""
    max_length: int = Field(512, ge=16, le=4096)
    """Token limit of a pair at evaluation and serving time."""
    tiny_hidden_size: int = Field(32, ge=8)
    """Hidden size of the tiny random BERT used by tests and quick runs."""
    tiny_layers: int = Field(2, ge=1)
    """Layers of the tiny random BERT."""
    tiny_heads: int = Field(2, ge=1)
    """Attention heads of the tiny random BERT."""
    evidence_selection: EvidenceSelectionSettings = EvidenceSelectionSettings()
    """Which evidence sentences a newly trained model sees."""


class TrainSettings(Section):
    """Fine-tuning hyper-parameters (the CPU recipe is the default)."""

    datasets: tuple[str, ...] = ("scifact", "citint")
    """Datasets whose train splits are trained on (and dev splits scored)."""
    epochs: int = Field(3, ge=1)
    """Training epochs."""
    max_steps: int = Field(-1, ge=-1)
    """Cap on optimiser steps (-1: no limit)."""
    max_examples: int | None = Field(None, ge=1)
    """Cap on training examples (quick runs; None: all)."""
    max_eval_examples: int | None = Field(None, ge=1)
    """Cap on dev examples (None: all)."""
    max_length: int = Field(256, ge=16, le=4096)
    """Training token length (serving uses `model.max_length`)."""
    batch_size: int = Field(16, ge=1)
    """Training pairs per optimiser step."""
    eval_batch_size: int = Field(32, ge=1)
    """Pairs per forward pass when scoring dev."""
    learning_rate: float = Field(1e-4, gt=0)
    """Peak learning rate of the encoder."""
    layer_lr_decay: float = Field(1.0, gt=0, le=1.0)
    """Layer-wise learning-rate decay (1.0: the same rate for every layer)."""
    head_learning_rate: float | None = Field(None, gt=0)
    """The new head's learning rate (None: `learning_rate`)."""
    head_warm_start: bool = False
    """Siamese head: fit it on the frozen encoder's features before fine-tuning (linear
    probing, then fine-tuning); not with `init_from`, whose head is already trained."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    """Share of the steps spent warming the learning rate up."""
    class_weighted_loss: bool = True
    """Weight the loss by inverse class frequency."""
    augment_rationale_only: float = Field(0.0, ge=0, le=1)
    """Share of SUPPORT / REFUTE pairs that also train with only their rationale sentences
    (tasks/data/augment.py; 0: off)."""
    augment_rationale_removed: float = Field(0.0, ge=0, le=1)
    """Share of SUPPORT / REFUTE pairs that also train without their rationale, labelled
    NEI (0: off)."""
    augment_self_support: float = Field(0.0, ge=0, le=1)
    """Share of the distinct training claims that also train as their own evidence (or a
    light rewrite of it: case, spacing, punctuation, after another sentence), labelled
    SUPPORT (tasks/data/augment.py; 0: off)."""
    min_class_share: float = Field(0.0, ge=0, lt=1)
    """Oversample each dataset's rarer classes (copies of its own pairs) until every class
    holds at least this share of the dataset's training pairs (tasks/data/augment.py; 0:
    off). Aimed at Citation-Integrity's NEI, 7 % of its pairs."""
    tune_class_offsets: bool = False
    """After fitting, tune per-class logit offsets on dev (the mean over datasets of macro
    F1) and add them to the classifier's output bias, so every runtime applies them
    (tasks/train/offsets.py); recorded in citeops.json. Needs a dev set."""
    attention_dropout: float | None = Field(None, ge=0, le=1)
    """Dropout on the attention probabilities while training (None: the base model's own,
    0.1 for BERT-family models). 0 lets PyTorch's scaled-dot-product attention run its fused
    kernel instead of materialising every attention matrix with a dropout mask: on a CPU a
    step at length 512 is several times faster (BENCHMARKS.md ## train)."""
    precision: Literal["auto", "32", "bf16-mixed"] = "auto"
    """Lightning precision; auto: bf16 where it is fast."""
    accelerator: str = "auto"
    """Lightning accelerator (auto, cpu, gpu, ...)."""
    bucket_size_multiplier: int = Field(50, ge=1)
    """Batches per length bucket of the bucketed sampler."""
    early_stopping_patience: int = Field(2, ge=0)
    """Epochs without dev improvement before training stops."""
    seed: int = 42
    """Seed of the training run."""
    num_workers: int = Field(0, ge=0)
    """Data-loader worker processes."""
    register_alias: str | None = "latest-trained"
    """Alias moved to every newly registered version (None: none)."""
    include_feedback: bool = True
    """Add accepted, non-leaked curated feedback to the training set."""
    max_minutes: float | None = Field(None, gt=0)
    """Wall-clock cap on fitting (None: none)."""
    threads: int | None = Field(None, ge=1)
    """Torch CPU threads (None: torch's default)."""
    devices: int | Literal["auto"] = "auto"
    """Lightning devices, e.g. 4 with `strategy` ddp on a 4-GPU node."""
    strategy: str = "auto"
    """Lightning strategy (auto, ddp, ...)."""
    init_from: str | None = None
    """Start from a registered model's weights instead of `model.base_model` (continued
    training), e.g. models:/claim-verifier@champion; None: the base model."""


class EvaluateSettings(Section):
    """Benchmark evaluation of a model on the test sets (also what the gate validates on)."""

    datasets: tuple[str, ...] = ("scifact", "citint")
    """Datasets evaluated."""
    split: str = "test"
    """Split evaluated."""
    batch_size: int = Field(32, ge=1)
    """Pairs per forward pass."""
    max_examples: int | None = Field(None, ge=1)
    """Cap on examples per dataset (None: all)."""
    latency_samples: int = Field(50, ge=0)
    """Single-pair requests timed for the latency p50 / p95."""


class SearchDimension(Section):
    """One ``train.*`` setting the recipe search varies: a list of ``choices``, or a
    range ``low``..``high`` (``integer``: whole numbers; ``log``: sampled on a log scale)."""

    choices: tuple[Any, ...] | None = None
    """The values to choose from (instead of a range)."""
    low: float | None = None
    """Lowest value of the range."""
    high: float | None = None
    """Highest value of the range."""
    log: bool = False
    """Sample the range on a log scale."""
    integer: bool = False
    """Sample whole numbers."""

    @model_validator(mode="after")
    def _choices_or_range(self) -> SearchDimension:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("give choices, or low < high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


def _default_space() -> dict[str, SearchDimension]:
    return {
        "learning_rate": SearchDimension(low=2e-5, high=3e-4, log=True),
        "head_learning_rate": SearchDimension(low=2e-5, high=3e-3, log=True),
        "max_length": SearchDimension(choices=(128, 192, 256)),
        "epochs": SearchDimension(low=1, high=3, integer=True),
        "batch_size": SearchDimension(choices=(8, 16, 32)),
        "layer_lr_decay": SearchDimension(low=0.75, high=1.0),
        "warmup_ratio": SearchDimension(low=0.0, high=0.2),
        "class_weighted_loss": SearchDimension(choices=(True, False)),
        "head_warm_start": SearchDimension(choices=(True, False)),
    }


class TuneSettings(Section):
    """The recipe search of ``citeops tune`` (tasks/train/tune.py), scored on dev only.

    Each trial fine-tunes with ``train`` plus the trial's values for the ``space`` keys
    (``train.*`` setting names) and is one MLflow run in ``experiment``; the objective is
    the selected epoch's mean over datasets of dev macro F1. Trials are capped by
    ``max_examples`` / ``max_eval_examples`` (None: all) and by what is left of the time
    budget. The Optuna study is kept in ``<home>/tune.db``: the same ``study`` name
    continues it.
    """

    experiment: str = "citeops-tune"
    """MLflow experiment of the trials."""
    study: str = "recipe"
    """Optuna study name; the same name continues a study."""
    trials: int = Field(8, ge=1)
    """Trials to run."""
    budget_minutes: float = Field(60.0, gt=0)
    """Time budget of the whole search."""
    min_trial_minutes: float = Field(1.0, gt=0)
    """No new trial starts with less time than this left."""
    sampler_seed: int = 0
    """Seed of the Optuna sampler (give each of several parallel workers its own)."""
    storage: str | None = None
    """Where the study is kept: an Optuna RDB URL (``sqlite:///…``, ``postgresql+psycopg://…``)
    or ``journal:///path/to/file`` (Optuna's journal file, safe for several processes on one
    machine); None: ``sqlite:///<home>/tune.db``. Several ``citeops tune`` processes given the
    same storage and ``study`` share one search."""
    pruner: Literal["median", "none"] = "median"
    """Stop a trial after an epoch whose dev score is below the median of earlier trials'
    scores at that epoch (Optuna's MedianPruner; single-process fits only)."""
    prune_after_trials: int = Field(4, ge=0)
    """Complete trials the pruner waits for before it stops any."""
    baseline_first: bool = True
    """A new study's first trial is the recipe in use (the ``train`` values of the ``space``
    keys), so the winner is compared with it in the same search."""
    max_examples: int | None = Field(None, ge=1)
    """Cap on training examples per trial (None: all)."""
    max_eval_examples: int | None = Field(None, ge=1)
    """Cap on dev examples per trial (None: all)."""
    space: dict[str, SearchDimension] = Field(default_factory=_default_space)
    """The `train.*` settings varied and their ranges or choices."""

    @field_validator("space")
    @classmethod
    def _train_settings_only(cls, value: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        unknown = sorted(set(value) - set(TrainSettings.model_fields))
        if unknown:
            raise ValueError(f"not train settings: {', '.join(unknown)}")
        if not value:
            raise ValueError("the search space is empty")
        return value
