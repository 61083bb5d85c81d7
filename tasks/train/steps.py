"""Prefect tasks of the training stage: thin wrappers over the functions beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.inference.aliases import CHALLENGER
from citeops.tasks.stepkit import publish_artifact, settings_from
from citeops.tasks.train.fit import fit_candidate, register_candidate
from citeops.tasks.train.training_set import build_training_set

if TYPE_CHECKING:
    from citeops.tasks.registry.register import RegisteredModel
    from citeops.tasks.train.fit import Candidate
    from citeops.tasks.train.training_set import TrainingSet


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


@task(name="training-set", cache_policy=NO_CACHE)
def training_set(overrides: dict[str, Any] | None = None) -> TrainingSet:
    """Benchmarks + accepted feedback minus the hold-out (artifact: counts and digests)."""

    data = build_training_set(settings_from(overrides))
    publish_artifact(
        "markdown", "training-set", data.markdown(), "training set: counts and digests"
    )
    return data


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(data: TrainingSet, overrides: dict[str, Any] | None = None) -> Candidate:
    """Fit a candidate and log it in an MLflow run; marks the store's training time."""
    from citeops.tasks.store.queries import mark_training

    settings = settings_from(overrides)
    # progress on stderr: a bar on a terminal, a plain line every 30 s in a worker's log
    candidate = fit_candidate(settings, data, progress=True)
    publish_artifact(
        "markdown", "candidate", _candidate_markdown(candidate), "the fitted candidate"
    )
    if settings.train.include_feedback:
        mark_training(settings, at=data.cutoff, note=f"retrain run {candidate.run_id}")
    return candidate


@task(name="register-challenger", cache_policy=NO_CACHE)
def register_challenger(
    candidate: Candidate, overrides: dict[str, Any] | None = None
) -> RegisteredModel:
    """A new registered version with alias ``challenger``; no other alias moves."""

    registered = register_candidate(settings_from(overrides), candidate, CHALLENGER)
    publish_artifact(
        "markdown",
        "challenger",
        f"`{registered.model_uri}` registered with alias `{CHALLENGER}` (run `{candidate.run_id}`)",
        "the registered challenger",
    )
    return registered
