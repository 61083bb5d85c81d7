"""The one place where every path, URI, threshold and hyper-parameter of citeops is named.

Settings are layered, highest priority first:

1. keyword arguments to :func:`load_settings` (what the CLI flags set),
2. ``CITEOPS_*`` environment variables (nested with ``__``: ``CITEOPS_TRAIN__EPOCHS=3``),
3. the YAML profile chosen by ``CITEOPS_PROFILE`` (``local``, ``production``, ``test``),
4. the defaults below.

Derived paths (data folder, log root, databases, MLflow store) default to places under
``home`` (``CITEOPS_HOME``) so that everything the tool writes lives in one folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROFILES_DIR = Path(__file__).parent / "profiles"
PROFILES = ("local", "production", "test")
ENV_PREFIX = "CITEOPS_"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the setting and says why."""


class _Section(BaseModel):
    model_config = {"extra": "forbid", "validate_assignment": True}


class EvidenceSelectionSettings(_Section):
    """Which evidence sentences a newly trained model sees (recorded in the model, so
    evaluation, the gate, drift and serving apply the same; see tasks/model/preprocess.py).

    ``method``: off | lead | bm25 | similarity (the embedded sentence encoder). BM25 keeps
    a rationale sentence of SciFact dev as often as similarity (0.70 vs 0.73 at length
    128) at a few tenths of a per cent of the cost, and gave the best dev macro F1 of the
    methods tried (BENCHMARKS.md, evidence selection); ``lead_sentences`` keeps that many
    leading sentences first (1 keeps Citation-Integrity's rationale, its first sentence,
    but scored lower on dev). ``budget_tokens``: None fills what ``max_length`` leaves
    beside the claim.
    """

    method: Literal["off", "lead", "bm25", "similarity"] = "bm25"
    budget_tokens: int | None = Field(None, ge=8)
    lead_sentences: int = Field(0, ge=0)


class ModelSettings(_Section):
    """The classifier: which base model, and how pairs are tokenised."""

    base_model: str = "minilm"  # minilm | tiny | any Hugging Face id or local path
    # classifier head: cross (evidence and claim read together; any architecture) or
    # siamese (tasks/model/siamese.py: each side encoded on its own, BERT-family bases)
    head: Literal["cross", "siamese"] = "cross"
    max_length: int = Field(512, ge=16, le=4096)
    labels: tuple[str, ...] = ("SUPPORT", "NEI", "REFUTE")
    # the tiny random BERT used by tests and quick runs
    tiny_hidden_size: int = Field(32, ge=8)
    tiny_layers: int = Field(2, ge=1)
    tiny_heads: int = Field(2, ge=1)
    evidence_selection: EvidenceSelectionSettings = EvidenceSelectionSettings()


class TrainSettings(_Section):
    """Fine-tuning hyper-parameters (the CPU recipe is the default)."""

    datasets: tuple[str, ...] = ("scifact", "citint")
    epochs: int = Field(3, ge=1)
    max_steps: int = Field(-1, ge=-1)  # -1: no limit
    max_examples: int | None = Field(None, ge=1)  # cap on training examples (quick runs)
    max_eval_examples: int | None = Field(None, ge=1)  # cap on dev examples
    max_length: int = Field(256, ge=16, le=4096)  # training length (serving uses model.max_length)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    layer_lr_decay: float = Field(1.0, gt=0, le=1.0)  # 1.0: same rate for every layer
    head_learning_rate: float | None = Field(None, gt=0)  # the new head's rate (None: as above)
    # siamese head: fit it on the frozen encoder's features before fine-tuning (linear
    # probing, then fine-tuning; tasks/model/siamese.py fit_head); not with init_from,
    # whose head is already trained
    head_warm_start: bool = False
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    class_weighted_loss: bool = True
    # extra training pairs from the benchmarks' rationale sentences (tasks/data/augment.py):
    # the share of SUPPORT / REFUTE pairs that also train with only their rationale, and
    # the share that also train without it, labelled NEI (0 turns a kind off)
    augment_rationale_only: float = Field(0.0, ge=0, le=1)
    augment_rationale_removed: float = Field(0.0, ge=0, le=1)
    precision: Literal["auto", "32", "bf16-mixed"] = "auto"  # auto: bf16 where it is fast
    accelerator: str = "auto"
    bucket_size_multiplier: int = Field(50, ge=1)  # batches per length bucket
    early_stopping_patience: int = Field(2, ge=0)
    seed: int = 42
    num_workers: int = Field(0, ge=0)
    register_alias: str | None = "latest-trained"  # alias moved to every new version
    include_feedback: bool = True  # add accepted, non-leaked curated feedback to train
    max_minutes: float | None = Field(None, gt=0)  # wall-clock cap on fitting (None: none)
    threads: int | None = Field(None, ge=1)  # torch CPU threads (None: torch's default)
    # Lightning devices and strategy: e.g. devices=4, strategy="ddp" on a 4-GPU node
    devices: int | Literal["auto"] = "auto"
    strategy: str = "auto"
    # estimated cost of one device-hour (USD); default: an AWS g4dn.xlarge on demand
    cost_per_device_hour: float = Field(0.526, ge=0)
    # start from a registered model's weights instead of model.base_model (continued
    # training), e.g. "models:/claim-verifier@champion"; None: the base model
    init_from: str | None = None


class EvaluateSettings(_Section):
    """Benchmark evaluation of a model on the test sets."""

    datasets: tuple[str, ...] = ("scifact", "citint")
    split: str = "test"
    batch_size: int = Field(32, ge=1)
    max_examples: int | None = Field(None, ge=1)
    latency_samples: int = Field(50, ge=0)  # single-pair requests timed for p50 / p95


class MlflowSettings(_Section):
    """Tracking server and registry."""

    tracking_uri: str | None = None  # default: sqlite under home
    artifact_location: str | None = None  # default: folder under home
    experiment: str = "citeops"
    registered_model: str = "claim-verifier"
    server_host: str = "127.0.0.1"
    server_port: int = Field(5000, ge=1, le=65535)
    backend_store_uri: str | None = None  # what `mlflow server` stores runs in
    artifacts_destination: str | None = None  # where `mlflow server` proxies artifacts to
    server_workers: int = Field(2, ge=1)  # uvicorn workers of `mlflow server`
    db_upgrade: bool = True  # run `mlflow db upgrade` before the server starts


class S3Settings(_Section):
    """S3 access; credentials come only from the standard AWS environment."""

    endpoint_url: str | None = None
    region: str = "us-east-1"


SERVING_RUNTIMES = ("torch", "onnxruntime", "openvino")
# Measured per-runtime micro-batching defaults, where a runtime's best budget differs from
# the serve.max_* defaults (BENCHMARKS.md, serve: token sweep of 2026-12-02; PyTorch bf16
# served 31 % more pairs/s at 2048 padded tokens than at 512, OpenVINO and ONNX Runtime
# were within 4 % of their 512 figure). They apply where neither serve.batching.<runtime>
# nor serve.<name> itself is set.
RUNTIME_BATCHING_DEFAULTS: dict[str, dict[str, int | float]] = {
    "torch": {"max_batch_tokens": 2048},
}


class BatchingSettings(_Section):
    """One runtime's micro-batching budget (``serve.batching.<runtime>``); a field left
    unset takes the ``serve.max_*`` default of the same name."""

    max_batch_size: int | None = Field(None, ge=1)
    max_batch_tokens: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0)


class ServeSettings(_Section):
    """The inference endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # micro-batching defaults; ``batching`` overrides them per runtime (over the measured
    # RUNTIME_BATCHING_DEFAULTS), and a slot uses the budget of the runtime it serves on
    max_batch_size: int = Field(16, ge=1)
    max_batch_tokens: int = Field(512, ge=1)  # padded tokens per forward pass (CPU caches)
    max_wait_ms: float = Field(5.0, ge=0)
    # e.g. CITEOPS_SERVE__BATCHING__OPENVINO__MAX_BATCH_TOKENS=1024; keys: SERVING_RUNTIMES
    batching: dict[Literal["torch", "onnxruntime", "openvino"], BatchingSettings] = {}
    # where PyTorch runs: auto is cuda when torch sees a CUDA GPU (and precision is not
    # int8, which runs on the CPU only), else cpu; ONNX Runtime and OpenVINO run on the CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    queue_size: int = Field(256, ge=1)
    max_batch_request: int = Field(64, ge=1)  # pairs in one POST /predict/batch
    # the API enforces ingest.max_claim_chars / max_evidence_chars; this can only tighten them
    max_text_chars: int = Field(20000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1)
    # bf16 autocast: 99.89% label agreement with fp32 on the 906 test pairs (BENCHMARKS.md)
    precision: Literal["fp32", "bf16", "int8"] = "bf16"
    threads: int | None = Field(None, ge=1)
    log_part_max_lines: int = Field(1000, ge=1)
    log_part_max_seconds: float = Field(60.0, gt=0)
    # /feedback answers 202 only once its line is in the part file; 503 after this long
    feedback_write_timeout_seconds: float = Field(10.0, gt=0)
    smoke_agreement_threshold: float = Field(0.0, ge=0, le=1)
    # base URLs of the serving replicas that a promotion deploys to, in turn; empty: the
    # one local endpoint at http://<host>:<port>
    endpoints: tuple[str, ...] = ()
    # OpenMP threads sleep instead of spinning at barriers: on a CPU shared with other
    # work, spinning made inference several times slower (see BENCHMARKS.md, serve)
    omp_wait_policy: Literal["passive", "active", "inherit"] = "passive"
    # Which inference runtime serves, validates and evaluates (tasks/model/runtimes.py).
    # auto: on the serving machine, the fastest runtime whose label agreement with PyTorch
    # fp32 on the model's parity sample is >= auto_min_agreement, from a short calibration
    # at load time, cached per model version and CPU under the state folder. A version
    # without a parity-checked ONNX export is always served by PyTorch. ``precision`` above
    # is PyTorch's precision; ONNX Runtime and OpenVINO have their own.
    runtime: Literal["auto", "torch", "onnxruntime", "openvino"] = "auto"
    onnxruntime_precision: Literal["fp32", "int8"] = "fp32"
    openvino_precision: Literal["fp32", "bf16"] = "bf16"
    auto_min_agreement: float = Field(0.99, ge=0, le=1)
    # pairs of the parity sample written at export (also what auto calibrates on)
    parity_pairs: int = Field(64, ge=1)
    parity_max_prob_diff: float = Field(1e-3, gt=0)  # ONNX fp32 vs PyTorch fp32 at export
    # auto times each runtime on the first this many pairs of the parity sample
    calibration_pairs: int = Field(32, ge=1)

    @field_validator("batching", mode="before")
    @classmethod
    def _known_runtimes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(str(key) for key in value if key not in SERVING_RUNTIMES)
            if unknown:
                raise ValueError(
                    f"unknown runtime {', '.join(unknown)}; the keys are "
                    f"{', '.join(SERVING_RUNTIMES)}"
                )
        return value

    def batching_value(self, runtime: str, name: str) -> Any:
        """``name`` (``max_batch_size``, ``max_batch_tokens`` or ``max_wait_ms``) for
        ``runtime``: ``batching.<runtime>.<name>`` where it is set, else ``<name>`` where
        it is set, else the runtime's measured default (``RUNTIME_BATCHING_DEFAULTS``),
        else ``<name>``'s default."""
        override = self.batching.get(runtime)  # type: ignore[call-overload]
        value = getattr(override, name) if override is not None else None
        if value is not None:
            return value
        measured = RUNTIME_BATCHING_DEFAULTS.get(runtime, {}).get(name)
        if measured is not None and name not in self.model_fields_set:
            return measured
        return getattr(self, name)


CLIENT_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"


class FeedbackSettings(_Section):
    """Who may send ``/feedback`` and how often (see docs/security.md).

    With ``require_credentials`` every ``/feedback`` request must carry an API key or a
    token signed by the app (``Authorization: Bearer ...``), its client id is written with
    the feedback line, and only such authenticated feedback counts toward the retraining
    trigger. It is required in the ``production`` profile; the ``local`` and ``test``
    profiles turn it off (a valid credential is still checked and recorded when sent).

    Secrets come only from the environment, never from a profile file:
    ``CITEOPS_FEEDBACK__API_KEYS`` (``client-id:key,client-id:key``; keys of at least 16
    characters) and ``CITEOPS_FEEDBACK__TOKEN_SECRET`` (the HMAC-SHA256 key the app signs
    tokens with, at least 32 characters).
    """

    require_credentials: bool = True
    api_keys: SecretStr | None = None
    token_secret: SecretStr | None = None
    token_max_ttl_seconds: float = Field(30 * 24 * 3600, gt=0)  # longer-lived tokens refused
    rate_per_minute: float = Field(60.0, gt=0)  # per client (or per address without one)
    rate_burst: int = Field(20, ge=1)
    rate_max_clients: int = Field(100_000, ge=1)  # clients tracked at once (memory bound)

    @field_validator("api_keys")
    @classmethod
    def _key_list(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @field_validator("token_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    def client_keys(self) -> dict[str, str]:
        """``{key: client id}`` from ``api_keys`` (empty when none are set)."""
        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else {}


def parse_api_keys(text: str) -> dict[str, str]:
    """``"alice:key1,app:key2"`` -> ``{"key1": "alice", "key2": "app"}``.

    Raises:
        ValueError: an entry is not ``client-id:key``, a client id is not 1-64 of
            ``A-Z a-z 0-9 _ -``, a key is shorter than 16 characters or used twice. The
            message never quotes a key.
    """
    import re

    keys: dict[str, str] = {}
    for number, entry in enumerate((e.strip() for e in text.split(",") if e.strip()), 1):
        client, sep, key = entry.partition(":")
        if not sep or not re.match(CLIENT_ID_PATTERN, client.strip()):
            raise ValueError(
                f"entry {number} must be client-id:key with a client id of 1-64 letters, "
                "digits, _ or -"
            )
        key = key.strip()
        if len(key) < 16:
            raise ValueError(f"entry {number} ({client.strip()}): key shorter than 16 characters")
        if key in keys:
            raise ValueError(f"entry {number} ({client.strip()}): key used twice")
        keys[key] = client.strip()
    return keys


class IngestSettings(_Section):
    """Validation limits and rules for feedback and query logs."""

    max_claim_chars: int = Field(5000, ge=1)
    max_evidence_chars: int = Field(50000, ge=1)
    raw_line_max_chars: int = Field(2000, ge=1)  # raw text kept in quarantine
    max_future_skew_seconds: float = Field(300.0, ge=0)
    conflict_rule: Literal["latest", "majority", "drop"] = "latest"
    chunk_lines: int = Field(50_000, ge=1)
    # inputs at least this large are read, parsed and validated in a child process while
    # the parent stores (two cores); smaller ones in-process (the child costs a GX import)
    parallel_parse_min_bytes: int = Field(32_000_000, ge=0)
    max_line_bytes: int = Field(1_000_000, ge=1)  # longer lines are quarantined unread
    leakage_datasets: tuple[str, ...] = ("scifact", "citint")  # their test claims never train
    leakage_split: str = "test"
    progress_every_lines: int = Field(100_000, ge=1)  # CLI progress line on stderr
    task_retries: int = Field(3, ge=0)  # Prefect retries of the S3 and database tasks
    sqlite_busy_timeout_seconds: float = Field(60.0, gt=0)


class DriftSettings(_Section):
    """Drift checks, their thresholds and the dataset-level verdict rule."""

    window_days: int = Field(30, ge=1)
    min_rows: int = Field(30, ge=1)
    domain_auc_threshold: float = Field(0.55, gt=0.5, lt=1)
    domain_large_rows: int = Field(1000, ge=1)
    permutation_rounds: int = Field(50, ge=1)
    # per text check; 0.975 keeps the "any text check" verdict near 5% (two checks), see
    # BENCHMARKS.md ## drift
    permutation_quantile: float = Field(0.975, gt=0, lt=1)
    length_ks_pvalue: float = Field(0.01, gt=0, lt=1)
    oov_rate_increase: float = Field(0.05, ge=0)
    label_mix_js_threshold: float = Field(0.1, gt=0, le=1)
    confidence_ks_pvalue: float = Field(0.01, gt=0, lt=1)
    reference_sample_size: int = Field(2000, ge=10)
    verdict_rule: Literal["any_text_or_half", "any", "majority"] = "any_text_or_half"
    alert_webhook_url: str | None = None
    seed: int = 0
    # above domain_large_rows current rows, numeric checks use the normed Wasserstein
    # distance (Evidently's default) instead of a KS p-value, which flags any tiny shift
    wasserstein_threshold: float = Field(0.1, gt=0)
    label_mix_chi2_pvalue: float = Field(0.01, gt=0, lt=1)  # JS over threshold AND significant
    domain_cv_folds: int = Field(5, ge=2)
    text_sample_size: int = Field(5000, ge=10)  # current rows sampled for text / OOV checks
    top_terms: int = Field(10, ge=0)
    reference_model_uri: str | None = None  # default: models:/<registered_model>@champion
    mlflow_experiment: str = "citeops-monitoring"
    alert_timeout_seconds: float = Field(10.0, gt=0)


class RetrainSettings(_Section):
    """The retrain flow: training set, hold-out, and the one-at-a-time lock."""

    # share of curated feedback kept out of training to validate on (by claim hash)
    holdout_share: float = Field(0.2, ge=0, lt=1)
    lock_ttl_seconds: float = Field(6 * 3600, gt=0)  # a crashed run's lock expires after this
    lock_wait_seconds: float = Field(0.0, ge=0)  # 0: a second run fails at once


class PromoteSettings(_Section):
    """Blue-green promotion through the serving endpoints' admin API, then a bake window."""

    bake_seconds: float = Field(60.0, ge=0)
    bake_poll_seconds: float = Field(5.0, gt=0)
    max_error_rate: float = Field(0.01, ge=0, le=1)  # 5xx share of /predict* during bake
    max_p95_ms: float = Field(2000.0, ge=0)  # p95 latency of /predict* during bake
    request_timeout_seconds: float = Field(600.0, gt=0)  # a deploy loads and checks a model


class TriggerSettings(_Section):
    """When the retraining flow runs."""

    min_new_feedback: int = Field(100, ge=1)
    quarterly_cron: str = "0 3 1 1,4,7,10 *"
    retrain_deployment: str | None = None  # "retrain/<name>"; default: first of flow "retrain"


class GateSettings(_Section):
    """When a candidate may replace the champion (the ``retrain`` flow's gate).

    Per benchmark, candidate and champion are compared on the same examples: a paired
    bootstrap 95 % interval of the macro-F1 difference wholly below 0, or a point drop of
    more than ``max_f1_drop`` (on benchmarks of at least ``min_drop_examples``), refuses;
    the mean difference over the benchmarks and the
    feedback hold-out must reach ``min_improvement``. With 300-600 examples a macro-F1
    interval is several points wide, so ``max_f1_drop`` (0.02) stays well inside it.

    ``class_f1_floor`` (0.05) catches a class that collapsed (never or almost never
    predicted) on a benchmark, not a weak one: the rarest class (Citation-Integrity NEI,
    7 % of pairs) has few test examples, so its F1 is itself noisy. Only classes present in
    a benchmark's gold labels are checked, and not on the feedback hold-out (few labels,
    given by users). The local and test profiles set 0.0 (off): the CPU recipe rarely
    predicts Citation-Integrity NEI (F1 0.08-0.17; the cross-encoder never did) and the
    tiny random model predicts one class.

    ``max_latency_increase`` (0.5) is generous because the p95 of single pairs on a CPU
    shared with other work is noisy; it still refuses a model that is twice as slow.
    ``latency_repeats`` (3): each timed pair runs that many times per model, alternating,
    and its fastest time counts; with one call per pair the demo refused a retrain of the
    same architecture at 102.5 against 49.1 ms p95 while the live endpoint answered traffic
    beside it (BENCHMARKS.md ## demo).

    ``behaviour_min_pass`` (0.8): the suite has three checks per claim (self-evidence is
    SUPPORT, whitespace and case invariance). Permuted labels fail every self-evidence
    check (share at most 0.67) and are refused; a weak model that misses some
    self-evidence checks while staying invariant passes.

    Always, with or without a champion, the candidate's macro F1 must exceed the
    majority-class baseline's by more than ``baseline_margin`` on each benchmark (0.0:
    strictly beat it; negative tolerates a candidate below it, -1.0 turns the rule off):
    no promoted model is worse than always answering the most frequent label. Without a
    champion only this and the absolute floors (class floor, behaviour) apply.
    """

    max_f1_drop: float = Field(0.02, ge=0, le=1)
    # the point-drop rule applies to benchmarks with at least this many examples; on fewer
    # (a young feedback hold-out: tens of pairs) one answer moves macro F1 by several
    # points, and only the bootstrap interval judges them
    min_drop_examples: int = Field(100, ge=0)
    min_improvement: float = Field(0.0, ge=-1, le=1)
    class_f1_floor: float = Field(0.05, ge=0, le=1)
    max_latency_increase: float = Field(0.5, ge=0)
    latency_repeats: int = Field(3, ge=1)
    behaviour_min_pass: float = Field(0.8, ge=0, le=1)
    baseline_margin: float = Field(0.0, ge=-1, le=1)
    bootstrap_resamples: int = Field(1000, ge=200, le=100_000)
    seed: int = 0


class StackSettings(_Section):
    """The local stack started by `citeops up`."""

    prefect_host: str = "127.0.0.1"
    prefect_port: int = Field(4200, ge=1, le=65535)
    prefect_api_url: str | None = None
    prefect_database_url: str | None = None  # default: Prefect's SQLite under home
    work_pool: str = "local"  # process pool served by the worker `citeops up` starts
    train_work_pool: str = "local"  # pool of the training deployment (GPU pool in production)
    monitor_cron: str = "0 6 * * *"  # daily schedule of the monitor deployment (UTC)
    worker_poll_seconds: float = Field(5.0, gt=0)
    health_timeout_seconds: float = Field(120.0, gt=0)
    stop_timeout_seconds: float = Field(20.0, gt=0)
    deploy_on_up: bool = True  # `citeops up` also deploys the flows from prefect.yaml
    serve: bool = True  # `citeops up` also starts the serving endpoint


class BenchSettings(_Section):
    """Workloads and goals of the benchmarks (`citeops bench ...`), apart from the product."""

    ingest_lines: int = Field(1_000_000, ge=1)  # generated feedback lines
    ingest_part_lines: int = Field(100_000, ge=1)  # lines per generated log object
    ingest_bad_fraction: float = Field(0.03, ge=0, lt=1)
    ingest_duplicate_fraction: float = Field(0.03, ge=0, lt=1)
    ingest_conflict_fraction: float = Field(0.005, ge=0, lt=1)
    drift_rows: int = Field(100_000, ge=30)  # generated, mostly distinct queries
    drift_target_seconds: int = Field(30, ge=1)
    drift_min_distinct_share: float = Field(0.9, ge=0, le=1)  # goal: distinct / rows
    # `bench train` time to quality: training seconds each side needs to reach the same
    # dev macro F1 (well above SciFact dev's majority-class 0.19; one epoch on SciFact at
    # length 128 reached 0.36-0.38), stopping at the target or its own training budget
    train_quality_dataset: str = "scifact"  # where evidence selection matters
    train_quality_examples: int | None = Field(None, ge=1)  # training pairs (None: split)
    train_target_f1: float = Field(0.40, ge=0, le=1)
    train_budget_seconds: float = Field(900.0, gt=0)  # training seconds per side
    train_eval_every: int = Field(10, ge=1)  # optimiser steps between dev scorings
    train_dev_examples: int = Field(150, ge=1)  # fixed dev subset scored
    # the baseline's learning rate; None: ours (train.learning_rate), so that the ratio
    # measures the pipeline, not the rate (pyvers' own default is 2e-5)
    train_baseline_learning_rate: float | None = Field(None, gt=0)
    mlflow_experiment: str = "citeops-bench"  # where `bench train` logs its curves


class SearchDimension(_Section):
    """One ``train.*`` setting the recipe search varies: a list of ``choices``, or a
    range ``low``..``high`` (``integer``: whole numbers; ``log``: sampled on a log scale)."""

    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

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
        "head_learning_rate": SearchDimension(low=1e-4, high=3e-3, log=True),
        "max_length": SearchDimension(choices=(128, 192, 256)),
        "epochs": SearchDimension(low=1, high=3, integer=True),
        "batch_size": SearchDimension(choices=(8, 16, 32)),
        "layer_lr_decay": SearchDimension(low=0.75, high=1.0),
        "warmup_ratio": SearchDimension(low=0.0, high=0.2),
        "class_weighted_loss": SearchDimension(choices=(True, False)),
    }


class TuneSettings(_Section):
    """The recipe search of ``citeops tune`` (tasks/model/tune.py), scored on dev only.

    Each trial fine-tunes with ``train`` plus the trial's values for the ``space`` keys
    (``train.*`` setting names) and is one MLflow run in ``experiment``; the objective is
    the selected epoch's mean over datasets of dev macro F1. Trials are capped by
    ``max_examples`` / ``max_eval_examples`` (None: all) and by what is left of the time
    budget. The Optuna study is kept in ``<home>/tune.db``: the same ``study`` name
    continues it.
    """

    experiment: str = "citeops-tune"
    study: str = "recipe"
    trials: int = Field(8, ge=1)
    budget_minutes: float = Field(60.0, gt=0)
    min_trial_minutes: float = Field(1.0, gt=0)  # no new trial with less time left
    sampler_seed: int = 0
    max_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    space: dict[str, SearchDimension] = Field(default_factory=_default_space)

    @field_validator("space")
    @classmethod
    def _train_settings_only(cls, value: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        unknown = sorted(set(value) - set(TrainSettings.model_fields))
        if unknown:
            raise ValueError(f"not train settings: {', '.join(unknown)}")
        if not value:
            raise ValueError("the search space is empty")
        return value


class Settings(BaseSettings):
    """All of citeops' configuration. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    profile: Literal["local", "production", "test"] = "local"
    home: Path = Path(".citeops")
    data_dir: Path | None = None  # default: <home>/data
    data_base_url: str = "https://raw.githubusercontent.com/jedick/MLE-capstone-project/main/data"
    log_root: str | None = None  # local folder or s3://bucket/prefix; default: <home>/logs
    store_url: str | None = None  # SQLAlchemy URL of the curated store; default: SQLite
    admin_token: SecretStr | None = None

    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    mlflow: MlflowSettings = MlflowSettings()
    s3: S3Settings = S3Settings()
    serve: ServeSettings = ServeSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    ingest: IngestSettings = IngestSettings()
    drift: DriftSettings = DriftSettings()
    trigger: TriggerSettings = TriggerSettings()
    retrain: RetrainSettings = RetrainSettings()
    promote: PromoteSettings = PromoteSettings()
    stack: StackSettings = StackSettings()
    gate: GateSettings = GateSettings()
    bench: BenchSettings = BenchSettings()
    tune: TuneSettings = TuneSettings()

    @field_validator("home", "data_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("log_root")
    @classmethod
    def _log_root_scheme(cls, value: str | None) -> str | None:
        if value and "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("must be a local folder or s3://bucket/prefix")
        return value

    @field_validator("feedback")
    @classmethod
    def _credentials_in_production(
        cls, value: FeedbackSettings, info: ValidationInfo
    ) -> FeedbackSettings:
        if info.data.get("profile") == "production" and not value.require_credentials:
            raise ValueError(
                "require_credentials (CITEOPS_FEEDBACK__REQUIRE_CREDENTIALS) must be on in the "
                "production profile: anonymous feedback would drive retraining"
            )
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        home = self.home
        if self.data_dir is None:
            self.data_dir = home / "data"
        if self.log_root is None:
            self.log_root = str(home / "logs")
        if self.store_url is None:
            self.store_url = f"sqlite:///{home / 'citeops.db'}"
        if self.mlflow.tracking_uri is None:
            self.mlflow.tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        if self.mlflow.artifact_location is None:
            self.mlflow.artifact_location = (home / "mlartifacts").as_uri()
        if self.mlflow.backend_store_uri is None:
            self.mlflow.backend_store_uri = self.mlflow.tracking_uri
        if self.mlflow.artifacts_destination is None:
            self.mlflow.artifacts_destination = self.mlflow.artifact_location
        if self.stack.prefect_api_url is None:
            self.stack.prefect_api_url = (
                f"http://{self.stack.prefect_host}:{self.stack.prefect_port}/api"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ProfileSource(settings_cls, init_settings))

    # ---- derived values used across stages -------------------------------------------
    @property
    def state_dir(self) -> Path:
        """Folder for PIDs, server logs and the serving slot state."""
        return self.home / "state"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def admin_secret(self) -> str | None:
        """The admin bearer token of the serving endpoints: ``admin_token``
        (``CITEOPS_ADMIN_TOKEN``); else, in the ``local`` profile only, a random token kept
        in ``<home>/state/admin-token`` (mode 0600), made on first use, so that the local
        endpoint and the promotion flow share it with no set-up. Other profiles: ``None``."""
        if self.admin_token is not None:
            return self.admin_token.get_secret_value()
        if self.profile != "local":
            return None
        import secrets

        path = self.state_dir / "admin-token"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    @property
    def serving_endpoints(self) -> tuple[str, ...]:
        """Base URLs of the serving replicas (``serve.endpoints``, else the local one)."""
        return self.serve.endpoints or (f"http://{self.serve.host}:{self.serve.port}",)

    @property
    def is_s3_log_root(self) -> bool:
        return bool(self.log_root and self.log_root.startswith("s3://"))


class _ProfileSource(PydanticBaseSettingsSource):
    """Reads ``configs/profiles/<profile>.yaml``; the profile comes from kwargs or the env."""

    def __init__(self, settings_cls: type[BaseSettings], init_settings: Any) -> None:
        super().__init__(settings_cls)
        self._init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {}) or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        profile = self._init_kwargs.get("profile") or os.environ.get(f"{ENV_PREFIX}PROFILE")
        profile = profile or "local"
        if profile not in PROFILES:
            raise SettingsError(
                f"setting profile (CITEOPS_PROFILE): unknown profile {profile!r}; "
                f"choose one of {', '.join(PROFILES)}"
            )
        path = PROFILES_DIR / f"{profile}.yaml"
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"settings profile {path}: top level must be a mapping")
        _refuse_secrets(data, path)
        data.setdefault("profile", profile)
        return data


SECRET_SETTINGS = (("admin_token",), ("feedback", "api_keys"), ("feedback", "token_secret"))


def _refuse_secrets(data: dict[str, Any], path: Path) -> None:
    """Secrets come only from the environment: a profile file that sets one is refused."""
    for loc in SECRET_SETTINGS:
        section: Any = data
        for part in loc[:-1]:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and section.get(loc[-1]) is not None:
            raise SettingsError(
                f"settings profile {path.name}: {'.'.join(loc)} is a secret; set it only in "
                f"the environment ({_env_name(loc)}), never in a file"
            )


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if not isinstance(p, int)) or ("settings",)
    dotted = ".".join(str(p) for p in loc)
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"setting {dotted} ({_env_name(loc)}): {first['msg']}{suffix}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from overrides, environment and profile.

    ``overrides`` use the field names (nested sections as dicts, e.g.
    ``train={"epochs": 1}``); ``None`` values are ignored so CLI options can pass through.

    Raises:
        SettingsError: one line naming the bad setting and why it is rejected.
    """
    clean = _drop_none(overrides)
    try:
        return Settings(**clean)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                cleaned[key] = nested
        elif value is not None:
            cleaned[key] = value
    return cleaned
