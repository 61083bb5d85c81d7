"""The retraining trigger's rule and record: should the model be retrained now, and why.

Three causes, any of which fires: trusted new feedback in the curated store since the
last training run (the store's training mark) at or above ``trigger.min_new_feedback`` --
accepted (neither leaked nor in conflict), not flagged by the feedback-quality stage, not
wholly from excluded clients and, where ``feedback.require_credentials`` is on, sent by an
authenticated client (:func:`citeops.tasks.store.queries.feedback_counts`);
drift found by the latest drift run; a forced run (the quarterly schedule passes
``force=True``). Every decision and its inputs are stored in the curated store (table
``retrain_decisions``, beside the promotion records: ``citeops history``), and attached to
an MLflow run when one is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError
from citeops.tasks.store.decisions import save_decision
from citeops.tasks.store.queries import feedback_counts, last_training_time

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.drift.detect import DriftReport

logger = logging.getLogger(__name__)

CAUSES = ("feedback", "drift", "forced")
FEEDBACK_SOURCE = "curated store"


@dataclass
class RetrainLaunch:
    """What became of starting the retraining deployment: the flow run it started
    (``deployment``, ``flow_run_id``), or why none was started (``reason``); ``pending``:
    the start failed (Prefect API unavailable) and the next ``monitor`` run retries it."""

    started: bool
    deployment: str | None = None
    flow_run_id: str | None = None
    reason: str | None = None
    pending: bool = False


@dataclass
class RetrainDecision:
    """Whether to retrain, which causes fired (``causes``), why in words (``reasons``),
    every input the decision was made from (``inputs``), where it was recorded
    (``record``, and its store row ``id``) and the retraining run it started
    (``deployment``)."""

    retrain: bool
    causes: list[str]
    reasons: list[str]
    inputs: dict[str, Any]
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    record: str | None = None
    deployment: RetrainLaunch | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``citeops trigger --json``, the stored row)."""
        return asdict(self)


def decide(
    new_feedback: int | None,
    min_new_feedback: int,
    drift: bool | None,
    force: bool,
    inputs: Mapping[str, Any] | None = None,
) -> RetrainDecision:
    """The rule itself, on plain inputs (``None`` means unknown and never fires)."""
    causes, reasons, quiet = [], [], []
    if new_feedback is not None and new_feedback >= min_new_feedback:
        causes.append("feedback")
        reasons.append(
            f"{new_feedback} trusted new feedback since the last training run "
            f"(threshold {min_new_feedback})"
        )
    else:
        quiet.append(
            "feedback count unknown"
            if new_feedback is None
            else f"{new_feedback} new feedback < {min_new_feedback}"
        )
    if drift:
        causes.append("drift")
        detail = (inputs or {}).get("drifted_checks")
        reasons.append("drift found" + (f" in {', '.join(detail)}" if detail else ""))
    else:
        quiet.append("no drift result" if drift is None else "no drift")
    if force:
        causes.append("forced")
        reasons.append("forced run (scheduled or manual)")
    else:
        quiet.append("not forced")
    if not causes:
        reasons.append("no cause fired: " + "; ".join(quiet))
    all_inputs = {
        "new_feedback": new_feedback,
        "min_new_feedback": min_new_feedback,
        "drift": drift,
        "force": force,
        **(inputs or {}),
    }
    return RetrainDecision(bool(causes), causes, reasons, all_inputs)


class DriftSummaryError(CiteopsError):
    """A drift JSON summary given to the trigger cannot be read."""


def read_drift_summary(path: Path) -> dict[str, Any]:
    """The drift JSON summary at ``path`` (what ``citeops drift`` writes).

    Raises:
        DriftSummaryError: the file is missing or is not a JSON object.
    """
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DriftSummaryError(
            f"{path}: cannot read the drift summary ({error.strerror}); run `citeops drift`"
        ) from error
    except ValueError as error:
        raise DriftSummaryError(f"{path}: not a drift JSON summary ({error})") from error
    if not isinstance(summary, dict):
        raise DriftSummaryError(f"{path}: not a drift JSON summary (not an object)")
    return summary


def latest_drift_summary(settings: Settings) -> dict[str, Any] | None:
    """The newest drift JSON summary under ``<reports_dir>/drift`` (``None`` if none)."""
    folder = settings.reports_dir / "drift"
    files = sorted(folder.glob("drift-*.json")) if folder.is_dir() else []
    return read_drift_summary(files[-1]) if files else None


def should_retrain(
    settings: Settings,
    force: bool = False,
    drift: DriftReport | Mapping[str, Any] | bool | None = None,
    new_feedback: int | None = None,
    since: datetime | None = None,
    record: bool = True,
    mlflow_run_id: str | None = None,
) -> RetrainDecision:
    """Decide whether to retrain, with reasons, and record the decision (``record``).

    ``drift`` is a drift report, its JSON summary, a bool, or ``None`` (unknown).
    ``new_feedback`` defaults to the trusted feedback in the curated store since
    ``since``, which defaults to the store's last training mark (the count at each step,
    accepted to trusted, is kept in the inputs as ``feedback_counts``).

    Raises:
        StoreError: the curated store cannot be reached (only when it must be read).
    """
    inputs: dict[str, Any] = {}
    drift_flag = _drift_flag(drift, inputs)
    if new_feedback is None:
        if since is None:
            since = last_training_time(settings)
        counts = feedback_counts(settings, since)
        new_feedback = counts["trusted"]
        inputs["feedback_source"] = FEEDBACK_SOURCE
        inputs["feedback_counts"] = counts
    inputs["since"] = since.isoformat() if since else None
    decision = decide(new_feedback, settings.trigger.min_new_feedback, drift_flag, force, inputs)
    logger.info(
        "retrain: %s (%s)", "yes" if decision.retrain else "no", "; ".join(decision.reasons)
    )
    if record:
        record_decision(decision, settings, mlflow_run_id)
    return decision


def _drift_flag(drift: Any, inputs: dict[str, Any]) -> bool | None:
    if drift is None or isinstance(drift, bool):
        return drift
    summary = drift if isinstance(drift, Mapping) else drift.summary()
    inputs["drift_report"] = summary.get("report")
    inputs["drift_status"] = summary.get("status")
    inputs["drifted_checks"] = list(summary.get("drifted_checks") or [])
    flag = summary.get("drift")
    return None if flag is None else bool(flag)


def record_decision(
    decision: RetrainDecision, settings: Settings, mlflow_run_id: str | None = None
) -> int:
    """Store the decision in the curated store (``citeops history`` shows it), and log it
    to the MLflow run ``mlflow_run_id`` when given; returns its store id (also set as
    ``decision.id``).

    Raises:
        StoreError: the curated store cannot be reached.
    """
    decision.id = save_decision(settings, decision.to_dict(), mlflow_run_id)
    decision.record = f"curated store, retrain decision #{decision.id}"
    if mlflow_run_id:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
        client.log_dict(mlflow_run_id, decision.to_dict(), "trigger/decision.json")
        client.set_tag(mlflow_run_id, "trigger.retrain", str(decision.retrain).lower())
    logger.info("retrain decision recorded: %s", decision.record)
    return decision.id
