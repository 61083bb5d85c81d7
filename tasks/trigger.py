"""The retraining trigger: should the model be retrained now, and why.

Three causes, any of which fires: accepted new feedback since the last training run at or
above ``trigger.min_new_feedback``; drift found by the latest drift run; a forced run (the
quarterly schedule passes ``force=True``). Every decision and its inputs are appended to
``<home>/trigger/decisions.jsonl`` (and ``latest.json``), and attached to an MLflow run
when one is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.data.multivers import LABELS

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.drift.detect import DriftReport

CAUSES = ("feedback", "drift", "forced")


@dataclass
class RetrainDecision:
    """Whether to retrain, which causes fired (``causes``), why in words (``reasons``) and
    every input the decision was made from (``inputs``)."""

    retrain: bool
    causes: list[str]
    reasons: list[str]
    inputs: dict[str, Any]
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    record: str | None = None
    deployment: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
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
            f"{new_feedback} accepted new feedback since the last training run "
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


def last_training_time(settings: Settings) -> datetime | None:
    """When the model was last trained: the later of the curated store's training mark
    (when the store provides ``last_training_time``) and the start of the latest finished
    MLflow run named ``train``; ``None`` if there is neither."""
    from citeops.tasks.drift.current import store_function

    marked = store_function("last_training_time")
    times = [t for t in (marked(settings) if marked else None, mlflow_training_time(settings)) if t]
    return max(times) if times else None


def mlflow_training_time(settings: Settings) -> datetime | None:
    """Start of the latest finished MLflow run named ``train`` (``None`` if there is none)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.run_name = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return datetime.fromtimestamp(runs[0].info.start_time / 1000, UTC) if runs else None


def count_new_feedback(settings: Settings, since: datetime | None) -> tuple[int, str]:
    """Accepted feedback since ``since`` and where the count came from.

    SEAM: the curated store's ``accepted_feedback_since(settings, since)`` is used when the
    ingestion area provides it; until then, distinct valid lines (claim, evidence and a
    known ``user_label``) in the local feedback log folder are counted.
    """
    from citeops.tasks.drift.current import store_function

    counter = store_function("accepted_feedback_since", "count_accepted_feedback")
    if counter is not None:
        value = counter(settings, since)
        return (value if isinstance(value, int) else len(value)), "curated store"
    if settings.is_s3_log_root:
        return 0, f"unknown: store reader not available and log root {settings.log_root} is S3"
    root = Path(str(settings.log_root).removeprefix("file://")) / "feedback"
    return count_feedback_lines(root, since), f"feedback log folder {root} (store not available)"


def count_feedback_lines(root: Path, since: datetime | None) -> int:
    """Distinct valid feedback lines (by claim, evidence, label) at or after ``since``."""
    from citeops.tasks.drift.current import _parse_time, query_log_files

    if not root.is_dir():
        return 0
    seen: set[tuple[str, str, str]] = set()
    for path in query_log_files(root, since):
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(row, dict) or row.get("user_label") not in LABELS:
                    continue
                claim, evidence = row.get("claim"), row.get("evidence")
                if not isinstance(claim, str) or not isinstance(evidence, str):
                    continue
                moment = _parse_time(row.get("datetime"))
                if since is not None and (moment is None or moment < since):
                    continue
                seen.add((claim, evidence, row["user_label"]))
    return len(seen)


def latest_drift_summary(settings: Settings) -> dict[str, Any] | None:
    """The newest drift JSON summary under ``<reports_dir>/drift`` (``None`` if none)."""
    folder = settings.reports_dir / "drift"
    files = sorted(folder.glob("drift-*.json")) if folder.is_dir() else []
    return json.loads(files[-1].read_text()) if files else None


def should_retrain(
    settings: Settings,
    force: bool = False,
    drift: DriftReport | Mapping[str, Any] | bool | None = None,
    new_feedback: int | None = None,
    since: datetime | None = None,
    record: bool = True,
    mlflow_run_id: str | None = None,
) -> RetrainDecision:
    """Decide whether to retrain, with reasons, and record the decision.

    ``drift`` is a drift report, its JSON summary, a bool, or ``None`` (unknown).
    ``new_feedback`` defaults to the accepted feedback since ``since``, which defaults to
    the start of the last training run in MLflow.
    """
    inputs: dict[str, Any] = {}
    drift_flag = _drift_flag(drift, inputs)
    if new_feedback is None:
        if since is None:
            since = last_training_time(settings)
        new_feedback, source = count_new_feedback(settings, since)
        inputs["feedback_source"] = source
    inputs["since"] = since.isoformat() if since else None
    decision = decide(new_feedback, settings.trigger.min_new_feedback, drift_flag, force, inputs)
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


def decisions_dir(settings: Settings) -> Path:
    return settings.home / "trigger"


def record_decision(
    decision: RetrainDecision, settings: Settings, mlflow_run_id: str | None = None
) -> Path:
    """Append the decision to ``decisions.jsonl``, rewrite ``latest.json``, and log it to
    the MLflow run ``mlflow_run_id`` when given."""
    folder = decisions_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "decisions.jsonl"
    decision.record = str(log)
    line = json.dumps(decision.to_dict(), default=str)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    (folder / "latest.json").write_text(json.dumps(decision.to_dict(), indent=2, default=str))
    if mlflow_run_id:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
        client.log_dict(mlflow_run_id, decision.to_dict(), "trigger/decision.json")
        client.set_tag(mlflow_run_id, "trigger.retrain", str(decision.retrain).lower())
    return log
