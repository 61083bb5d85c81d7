"""Settings of what comes in: log ingestion and the drift checks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from citeops.configs.base import Section


class IngestSettings(Section):
    """Validation limits and rules for feedback and query logs."""

    max_claim_chars: int = Field(5000, ge=1)
    """Longest claim accepted (also enforced by the API)."""
    max_evidence_chars: int = Field(50000, ge=1)
    """Longest evidence accepted (also enforced by the API)."""
    raw_line_max_chars: int = Field(2000, ge=1)
    """Raw text of a bad line kept in quarantine."""
    max_future_skew_seconds: float = Field(300.0, ge=0)
    """How far in the future a line's datetime may be."""
    conflict_rule: Literal["latest", "majority", "drop"] = "latest"
    """Which label wins when the same pair got different labels."""
    chunk_lines: int = Field(20_000, ge=1)
    """Lines validated and stored per chunk (bounds the ingest's memory: about 8 KB per
    line in the reader while a chunk is validated)."""
    parallel_parse_min_bytes: int = Field(32_000_000, ge=0)
    """Inputs at least this large are read, parsed and validated in a child process while
    the parent stores; smaller ones in-process (the child costs a GX import)."""
    max_line_bytes: int = Field(1_000_000, ge=1)
    """Longer lines are quarantined unread."""
    leakage_datasets: tuple[str, ...] = ("scifact", "citint")
    """Datasets whose test claims never train."""
    leakage_split: str = "test"
    """The split of `leakage_datasets` kept out of training."""
    progress_every_lines: int = Field(100_000, ge=1)
    """Lines between CLI progress lines on stderr."""
    task_retries: int = Field(3, ge=0)
    """Prefect retries of the S3 and database tasks."""
    sqlite_busy_timeout_seconds: float = Field(60.0, gt=0)
    """How long a SQLite writer waits for a lock."""


class DriftSettings(Section):
    """Drift checks, their thresholds and the dataset-level verdict rule."""

    window_days: int = Field(30, ge=1)
    """Days of queries checked."""
    min_rows: int = Field(30, ge=1)
    """Fewest current rows a check runs on."""
    domain_auc_threshold: float = Field(0.55, gt=0.5, lt=1)
    """Domain classifier AUROC above which the text has drifted."""
    domain_large_rows: int = Field(1000, ge=1)
    """Above this many rows on each side, the domain classifier's AUROC is judged against
    `domain_auc_threshold` alone, and numeric checks use the normed Wasserstein distance
    (Evidently's default) instead of a KS p-value, which flags any tiny shift."""
    permutation_rounds: int = Field(50, ge=1)
    """Permutation rounds of the text checks."""
    permutation_quantile: float = Field(0.975, gt=0, lt=1)
    """Per text check; 0.975 keeps the any-text-check verdict near 5 % (two checks),
    BENCHMARKS.md ## drift."""
    length_ks_pvalue: float = Field(0.01, gt=0, lt=1)
    """KS p-value below which text lengths have drifted."""
    oov_rate_increase: float = Field(0.05, ge=0)
    """Increase of the out-of-vocabulary rate that counts as drift."""
    label_mix_js_threshold: float = Field(0.1, gt=0, le=1)
    """Jensen-Shannon distance of the predicted label mix that counts as drift."""
    confidence_ks_pvalue: float = Field(0.01, gt=0, lt=1)
    """KS p-value below which the confidence distribution has drifted."""
    reference_sample_size: int = Field(2000, ge=10)
    """Reference rows sampled from the training data."""
    verdict_rule: Literal["any_text_or_half", "any", "majority"] = "any_text_or_half"
    """How check results make the dataset-level verdict."""
    alert_webhook_url: str | None = None
    """Webhook posted to when drift is found (None: no alert)."""
    seed: int = 0
    """Seed of the samples and permutations."""
    wasserstein_threshold: float = Field(0.1, gt=0)
    """Normed Wasserstein distance that counts as drift above `domain_large_rows`."""
    label_mix_chi2_pvalue: float = Field(0.01, gt=0, lt=1)
    """The label mix has drifted when its JS distance is over the threshold AND this
    chi-squared p-value is significant."""
    domain_cv_folds: int = Field(5, ge=2)
    """Cross-validation folds of the domain classifier."""
    text_sample_size: int = Field(5000, ge=10)
    """Current rows sampled for the text and OOV checks."""
    top_terms: int = Field(10, ge=0)
    """Terms most typical of each side listed in the report (0: none)."""
    reference_model_uri: str | None = None
    """Model whose predictions are the reference (None: models:/<registered_model>@champion)."""
    mlflow_experiment: str = "citeops-monitoring"
    """MLflow experiment of the drift runs."""
    alert_timeout_seconds: float = Field(10.0, gt=0)
    """Timeout of the webhook call."""
