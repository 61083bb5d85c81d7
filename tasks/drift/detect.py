"""Run every drift check on a reference and a current window and reach a verdict."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.configs.settings import DriftSettings
from citeops.tasks.drift.checks import (
    NOT_ENOUGH_DATA,
    CheckResult,
    claim_units,
    domain_classifier_check,
    label_mix_check,
    numeric_check,
    oov_check,
    overall_verdict,
    pair_components,
    skipped,
)
from citeops.tasks.drift.current import QueryWindow
from citeops.tasks.drift.reference import Reference

if TYPE_CHECKING:
    from citeops.tasks.drift.alert import AlertDelivery

logger = logging.getLogger(__name__)

NO_REFERENCE_PREDICTIONS = "no reference predictions"
CHECK_NAMES = (
    "claim_text",
    "evidence_text",
    "claim_length",
    "evidence_length",
    "claim_oov",
    "evidence_oov",
    "label_mix_vs_reference",
    "label_mix_vs_training",
    "confidence",
)


@dataclass
class DriftReport:
    """The outcome of one drift run: every check, the verdict, and where the report is."""

    status: str  # "drift" | "no drift" | "not enough data"
    drift: bool | None
    checks: list[CheckResult]
    rule: str
    current_rows: int
    reference: dict[str, Any]
    window: dict[str, Any]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    seconds: float = 0.0
    report: str | None = None  # HTML path
    summary_path: str | None = None  # JSON path
    mlflow_run_id: str | None = None
    alert: AlertDelivery | None = None

    @property
    def drifted_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.drift]

    def summary(self) -> dict[str, Any]:
        """What ``citeops drift --json`` prints and the JSON summary file holds."""
        return {
            "drift": self.drift,
            "status": self.status,
            "checks": {c.name: c.summary() for c in self.checks},
            "report": self.report,
            "summary": self.summary_path,
            "rule": self.rule,
            "drifted_checks": self.drifted_checks,
            "current_rows": self.current_rows,
            "reference": self.reference,
            "window": self.window,
            "created_at": self.created_at,
            "seconds": round(self.seconds, 3),
            "mlflow_run_id": self.mlflow_run_id,
            "alert": self.alert.to_dict() if self.alert else None,
        }


def _sample_indices(rows: int, size: int, seed: int) -> np.ndarray:
    if rows <= size:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def detect_drift(
    reference: Reference, current: QueryWindow, settings: DriftSettings
) -> DriftReport:
    """Every check on ``current`` against ``reference``, and the dataset-level verdict.

    A window with fewer than ``min_rows`` queries gets ``status="not enough data"`` and no
    verdict (``drift=None``). Prediction checks that need the model's reference
    predictions are skipped with the reason "no reference predictions" when there are none.
    Text checks (domain classifier, OOV) use a seeded sample of at most
    ``text_sample_size`` current rows (the window keeps only a sample's texts); length,
    label and confidence checks use every row.
    """
    started = time.perf_counter()
    rows = len(current)
    base = {
        "rule": settings.verdict_rule,
        "current_rows": rows,
        "reference": reference.describe(),
        "window": current.describe(),
    }
    if rows < settings.min_rows:
        logger.info("drift: %d queries, fewer than %d: not enough data", rows, settings.min_rows)
        checks = [
            CheckResult(
                name,
                _kind(name),
                "",
                None,
                None,
                None,
                NOT_ENOUGH_DATA,
                note=f"{rows} queries in the window; at least {settings.min_rows} needed",
            )
            for name in CHECK_NAMES
        ]
        return DriftReport(
            NOT_ENOUGH_DATA, None, checks, seconds=time.perf_counter() - started, **base
        )
    sample_claims, sample_evidences = current.sample_claims, current.sample_evidences
    idx = _sample_indices(len(sample_claims), settings.text_sample_size, settings.seed)
    claims = [sample_claims[i] for i in idx]
    evidences = [sample_evidences[i] for i in idx]
    all_claims = reference.claims + claims
    sides = [0] * len(reference.claims) + [1] * len(claims)
    groups = pair_components(all_claims, reference.evidences + evidences)
    units = claim_units(all_claims, sides)
    checks = [
        domain_classifier_check("claim_text", reference.claims, claims, settings, groups, units),
        domain_classifier_check(
            "evidence_text", reference.evidences, evidences, settings, groups, units
        ),
        numeric_check(
            "claim_length",
            "length",
            reference.claim_lengths,
            current.claim_length_array(),
            settings,
            settings.length_ks_pvalue,
        ),
        numeric_check(
            "evidence_length",
            "length",
            reference.evidence_lengths,
            current.evidence_length_array(),
            settings,
            settings.length_ks_pvalue,
        ),
        oov_check(
            "claim_oov", reference.claim_vocabulary, reference.holdout_claims, claims, settings
        ),
        oov_check(
            "evidence_oov",
            reference.evidence_vocabulary,
            list(dict.fromkeys(reference.holdout_evidences)),
            list(dict.fromkeys(evidences)),
            settings,
        ),
        *_prediction_checks(reference, current, settings),
    ]
    verdict = overall_verdict(checks, settings.verdict_rule)
    status = NOT_ENOUGH_DATA if verdict is None else ("drift" if verdict else "no drift")
    report = DriftReport(status, verdict, checks, seconds=time.perf_counter() - started, **base)
    logger.info(
        "drift: %s on %d queries (drifted: %s) in %.1f s",
        status,
        rows,
        ", ".join(report.drifted_checks) or "none",
        report.seconds,
    )
    return report


def _prediction_checks(
    reference: Reference, current: QueryWindow, settings: DriftSettings
) -> list[CheckResult]:
    preds = reference.predictions
    if preds is None:
        reason = reference.note or NO_REFERENCE_PREDICTIONS
        if NO_REFERENCE_PREDICTIONS not in reason:
            reason = f"{NO_REFERENCE_PREDICTIONS}: {reason}"
        return [
            skipped("label_mix_vs_reference", "label_mix", "Jensen-Shannon distance", reason),
            skipped("label_mix_vs_training", "label_mix", "Jensen-Shannon distance", reason),
            skipped("confidence", "confidence", "Kolmogorov-Smirnov / normed Wasserstein", reason),
        ]
    expected = preds.expected_counts(reference.label_counts)
    training_mix = (
        label_mix_check(
            "label_mix_vs_training",
            expected,
            current.predictions,
            preds.labels,
            settings,
            method="Jensen-Shannon distance to the training label mix "
            "seen through the model's held-out confusion matrix (+ chi-square)",
        )
        if expected is not None
        else skipped(
            "label_mix_vs_training",
            "label_mix",
            "Jensen-Shannon distance",
            "reference predictions have no gold labels",
        )
    )
    return [
        label_mix_check(
            "label_mix_vs_reference",
            preds.predicted_counts(),
            current.predictions,
            preds.labels,
            settings,
        ),
        training_mix,
        numeric_check(
            "confidence",
            "confidence",
            preds.confidences,
            current.confidence_array(),
            settings,
            settings.confidence_ks_pvalue,
        ),
    ]


def _kind(name: str) -> Any:
    if name.endswith("_text"):
        return "text"
    if name.endswith("_length"):
        return "length"
    if name.endswith("_oov"):
        return "oov"
    return "label_mix" if name.startswith("label_mix") else "confidence"
