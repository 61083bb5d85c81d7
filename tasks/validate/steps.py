"""Prefect tasks of the validation stage: thin wrappers over the functions beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.stepkit import publish_artifact, settings_from
from citeops.tasks.validate.compare import judge, validate_against_champion
from citeops.tasks.validate.gate import require_gate

if TYPE_CHECKING:
    from citeops.tasks.data.multivers import Example
    from citeops.tasks.validate.compare import Validation
    from citeops.tasks.validate.gate import GateDecision


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


@task(name="validate-candidate", cache_policy=NO_CACHE)
def validate_candidate(
    candidate_uri: str,
    champion_uri: str | None,
    holdout: list[Example],
    overrides: dict[str, Any] | None = None,
) -> Validation:
    """Candidate and champion on the same benchmark examples and feedback hold-out."""

    settings = settings_from(overrides)
    validation = validate_against_champion(settings, candidate_uri, champion_uri, holdout)
    counts = ", ".join(f"{name} {n}" for name, n in validation.examples.items())
    publish_artifact(
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

    decision = judge(settings_from(overrides), validation)
    publish_artifact(
        "table", "candidate-vs-champion", _gate_rows(decision), "candidate vs champion"
    )
    publish_artifact("markdown", "gate-decision", decision.markdown_table(), "the gate's decision")
    require_gate(decision)
    return decision
