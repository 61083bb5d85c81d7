"""Workloads and goals of the benchmarks (`citeops bench ...`), apart from the product's
settings: the product never reads them, and `citeops` settings never carry them.

Layered like the product's settings, highest priority first: keyword arguments to
:func:`load_bench_settings` (what the ``citeops bench`` options set), ``CITEOPS_BENCH__*``
environment variables (``CITEOPS_BENCH__INGEST_LINES=5000``), then the defaults below.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from citeops.configs.base import ENV_PREFIX, SettingsError, describe, drop_none

SECTION = "bench"


class BenchSettings(BaseSettings):
    """Workloads and goals of `citeops bench ingest`, `drift`, `train` and `soak`."""

    model_config = SettingsConfigDict(
        env_prefix=f"{ENV_PREFIX}{SECTION.upper()}__",
        extra="forbid",
        validate_default=True,
        validate_assignment=True,
        use_attribute_docstrings=True,
    )

    ingest_lines: int = Field(1_000_000, ge=1)
    """Feedback lines `bench ingest` generates."""
    ingest_part_lines: int = Field(100_000, ge=1)
    """Lines per generated log object."""
    ingest_bad_fraction: float = Field(0.03, ge=0, lt=1)
    """Share of generated lines that are malformed (quarantined)."""
    ingest_duplicate_fraction: float = Field(0.03, ge=0, lt=1)
    """Share of generated lines that repeat another."""
    ingest_conflict_fraction: float = Field(0.005, ge=0, lt=1)
    """Share of generated lines that give another label to a pair already labelled."""
    ingest_target_seconds: float = Field(60.0, gt=0)
    """Goal: seconds to ingest `ingest_lines` lines, on each store."""
    ingest_target_peak_rss_mb: float = Field(1000.0, gt=0)
    """Goal: peak RSS of the ingest (store and reader processes summed), on each store."""
    ingest_postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    """The PostgreSQL server `bench ingest --store-url postgresql` uses: each run creates a
    database of its own through it and drops it afterwards."""
    drift_rows: int = Field(1_000_000, ge=30)
    """Generated, mostly distinct queries `bench drift` checks."""
    drift_target_seconds: int = Field(60, ge=1)
    """Goal: seconds of a drift run on `drift_rows` queries."""
    drift_target_peak_rss_mb: float = Field(2000.0, gt=0)
    """Goal: peak RSS of the drift run (its own process) on `drift_rows` queries."""
    drift_min_distinct_share: float = Field(0.9, ge=0, le=1)
    """Goal: distinct queries / rows of the generated workload."""
    train_quality_dataset: str = "scifact"
    """Dataset of `bench train`'s time-to-quality race (one where evidence selection
    matters)."""
    train_quality_examples: int | None = Field(None, ge=1)
    """Training pairs of the race (None: the whole split)."""
    train_target_f1: float = Field(0.40, ge=0, le=1)
    """Dev macro F1 both sides race to (well above SciFact dev's majority-class 0.19; one
    epoch on SciFact at length 128 reached 0.36-0.38)."""
    train_budget_seconds: float = Field(900.0, gt=0)
    """Training seconds per side before it stops short of the target."""
    train_eval_every: int = Field(10, ge=1)
    """Optimiser steps between dev scorings."""
    train_dev_examples: int = Field(150, ge=1)
    """Pairs of the fixed dev subset scored."""
    train_baseline_learning_rate: float | None = Field(None, gt=0)
    """The baseline's learning rate (None: ours, `train.learning_rate`, so that the ratio
    measures the pipeline, not the rate; pyvers' own default is 2e-5)."""
    mlflow_experiment: str = "citeops-bench"
    """MLflow experiment where `bench train` logs its curves."""
    soak_minutes: float = Field(10.0, gt=0)
    """Length of `bench soak`'s measured run (after its warm-up); fractions allowed."""
    soak_warmup_seconds: float = Field(60.0, ge=0)
    """Seconds of `bench soak`'s traffic before its measured run (not measured): the server's
    RSS after warm-up is read after them."""
    soak_rate: float = Field(4.0, gt=0)
    """Requests per second `bench soak` sends, open loop (60 % /predict, 20 % /feedback,
    20 % app actions): well below what `citeops serve` answers on 2 cores, so that the
    soak measures a steady state, not a growing queue."""
    soak_swap_every_seconds: float = Field(30.0, gt=0)
    """Seconds between `bench soak`'s blue-green swaps (a deploy, then a rollback, ...)."""
    soak_ingest_every_seconds: float = Field(60.0, gt=0)
    """Seconds between `bench soak`'s runs of `citeops ingest` on the endpoint's logs."""
    soak_max_rss_growth: float = Field(0.10, ge=0)
    """Goal: server RSS at the end over RSS after warm-up, minus 1."""
    soak_max_p99_ratio: float = Field(1.5, gt=0)
    """Goal: p99 latency of the last row over p99 of the first."""


def load_bench_settings(**overrides: Any) -> BenchSettings:
    """The benchmark settings from ``overrides`` (``None`` values ignored, so unset CLI
    options pass through), the environment and the defaults.

    Raises:
        SettingsError: one line naming the bad setting (``bench.<field>``) and its
            environment variable.
    """
    try:
        return BenchSettings(**drop_none(overrides))
    except ValidationError as error:
        raise SettingsError(describe(error, (SECTION,))) from None
