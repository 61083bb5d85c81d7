"""Prefect tasks of the model stages: thin wrappers over the plain functions beside them.

Each loads the settings itself (the flow passes only plain, typed values), logs through
``logging`` (shown in the Prefect run logs), and publishes what a reviewer needs as an
artifact: the training set's counts, the gate's "candidate vs champion" table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

if TYPE_CHECKING:
    from citeops.tasks.data.multivers import Example
    from citeops.tasks.model.gate import GateDecision
    from citeops.tasks.model.promote import AliasMove, Promotion
    from citeops.tasks.model.registry import RegisteredModel
    from citeops.tasks.model.train import Candidate
    from citeops.tasks.model.training_set import TrainingSet
    from citeops.tasks.model.validate import Validation
    from citeops.tasks.trigger.decision import RetrainDecision

log = logging.getLogger(__name__)


def _settings(overrides: dict[str, Any] | None = None) -> Any:
    from citeops.configs.settings import load_settings

    return load_settings(**(overrides or {}))


def _artifact(kind: str, key: str, body: Any, description: str) -> None:
    """A Prefect artifact when running inside a flow run (plain calls skip it)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    if kind == "table":
        create_table_artifact(table=body, key=key, description=description)
    else:
        create_markdown_artifact(markdown=body, key=key, description=description)


def _candidate_markdown(candidate: Candidate) -> str:
    dev = candidate.metrics.get("f1_macro_by_dataset", candidate.metrics.get("f1_macro"))
    return "\n".join(
        [
            f"MLflow run `{candidate.run_id}`, model `{candidate.logged_model_uri}`",
            "",
            f"- dev macro F1 (mean over datasets): {dev:.3f}" if dev is not None else "",
            f"- {candidate.train_examples} train / {candidate.dev_examples} dev examples, "
            f"{candidate.steps} steps, {candidate.wall_seconds:.0f} s",
            f"- device {candidate.resources.get('device_type')} "
            f"x{int(float(candidate.resources.get('device_count', 1)))}, "
            f"estimated cost ${candidate.cost_usd:.4f}",
        ]
    )


def _gate_rows(decision: GateDecision) -> list[dict[str, Any]]:
    """The gate's table for a Prefect table artifact: one row per benchmark."""
    return [
        {
            "benchmark": row.benchmark,
            "examples": row.examples,
            "candidate F1": round(row.candidate_f1, 4),
            "champion F1": None if row.champion_f1 is None else round(row.champion_f1, 4),
            "difference": None if row.difference is None else round(row.difference, 4),
            "95 % CI": None if row.ci_low is None else f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]",
            "majority baseline F1": None if row.baseline_f1 is None else round(row.baseline_f1, 4),
            "passed": decision.passed,
        }
        for row in decision.rows
    ]


@task(name="decide-retraining", cache_policy=NO_CACHE)
def decide_retraining(force: bool, overrides: dict[str, Any] | None = None) -> RetrainDecision:
    """The trigger rule now: new feedback since the last training, or forced."""
    from citeops.tasks.trigger.decision import should_retrain

    return should_retrain(_settings(overrides), force=force, record=False)


@task(name="training-set", cache_policy=NO_CACHE)
def training_set(overrides: dict[str, Any] | None = None) -> TrainingSet:
    """Benchmarks + accepted feedback minus the hold-out (artifact: counts and digests)."""
    from citeops.tasks.model.training_set import build_training_set

    data = build_training_set(_settings(overrides))
    _artifact("markdown", "training-set", data.markdown(), "training set: counts and digests")
    return data


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(data: TrainingSet, overrides: dict[str, Any] | None = None) -> Candidate:
    """Fit a candidate and log it in an MLflow run; marks the store's training time."""
    from citeops.tasks.model.train import fit_candidate
    from citeops.tasks.store.queries import mark_training

    settings = _settings(overrides)
    # progress on stderr: a bar on a terminal, a plain line every 30 s in a worker's log
    candidate = fit_candidate(settings, data, progress=True)
    _artifact("markdown", "candidate", _candidate_markdown(candidate), "the fitted candidate")
    if settings.train.include_feedback:
        mark_training(settings, at=data.cutoff, note=f"retrain run {candidate.run_id}")
    return candidate


@task(name="register-challenger", cache_policy=NO_CACHE)
def register_challenger(
    candidate: Candidate, overrides: dict[str, Any] | None = None
) -> RegisteredModel:
    """A new registered version with alias ``challenger``; no other alias moves."""
    from citeops.tasks.model.promote import CHALLENGER
    from citeops.tasks.model.train import register_candidate

    registered = register_candidate(_settings(overrides), candidate, CHALLENGER)
    _artifact(
        "markdown",
        "challenger",
        f"`{registered.model_uri}` registered with alias `{CHALLENGER}` (run `{candidate.run_id}`)",
        "the registered challenger",
    )
    return registered


@task(name="validate-candidate", cache_policy=NO_CACHE)
def validate_candidate(
    candidate_uri: str,
    champion_uri: str | None,
    holdout: list[Example],
    overrides: dict[str, Any] | None = None,
) -> Validation:
    """Candidate and champion on the same benchmark examples and feedback hold-out."""
    from citeops.tasks.model.validate import validate_against_champion

    settings = _settings(overrides)
    validation = validate_against_champion(settings, candidate_uri, champion_uri, holdout)
    counts = ", ".join(f"{name} {n}" for name, n in validation.examples.items())
    _artifact(
        "markdown",
        "validation",
        f"`{candidate_uri}` vs `{champion_uri or 'no champion'}` on the same examples: {counts}",
        "what the candidate was validated on",
    )
    return validation


@task(name="gate-candidate", cache_policy=NO_CACHE)
def gate_candidate(validation: Validation, overrides: dict[str, Any] | None = None) -> GateDecision:
    """Decide, log the decision to MLflow and as the "candidate vs champion" artifact,
    then raise :class:`GateFailed` when the candidate is refused."""
    from citeops.tasks.model.gate import require_gate
    from citeops.tasks.model.validate import judge

    decision = judge(_settings(overrides), validation)
    _artifact("table", "candidate-vs-champion", _gate_rows(decision), "candidate vs champion")
    _artifact("markdown", "gate-decision", decision.markdown_table(), "the gate's decision")
    require_gate(decision)
    return decision


@task(name="promote-blue-green", cache_policy=NO_CACHE)
def promote_candidate(model_uri: str, overrides: dict[str, Any] | None = None) -> Promotion:
    """Deploy to every endpoint, bake, roll back on failure (aliases untouched)."""
    from citeops.tasks.model.promote import promote_blue_green

    promotion = promote_blue_green(_settings(overrides), model_uri)
    _artifact("table", "bake", [b.to_dict() for b in promotion.bake], "bake figures per endpoint")
    return promotion


@task(name="move-aliases", cache_policy=NO_CACHE)
def move_champion(version: str, overrides: dict[str, Any] | None = None) -> AliasMove:
    """``champion`` → the new version, ``previous`` → the old one, ``challenger`` removed."""
    from citeops.tasks.model.promote import move_aliases

    return move_aliases(_settings(overrides), version)
