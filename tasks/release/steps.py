"""Prefect tasks of the release stage: thin wrappers over the functions beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.release.endpoints import serving_endpoints
from citeops.tasks.release.online import (
    ExperimentPlan,
    online_mode,
    review_experiment,
    start_experiment,
)
from citeops.tasks.release.online_report import report_text
from citeops.tasks.release.promote import (
    admin_client,
    move_aliases_or_roll_back,
    promote_blue_green,
)
from citeops.tasks.stepkit import publish_artifact, settings_from

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.release.online_report import Experiment
    from citeops.tasks.release.promote import AliasMove, Promotion


@task(name="promote-blue-green", cache_policy=NO_CACHE)
def promote_candidate(model_uri: str, overrides: dict[str, Any] | None = None) -> Promotion:
    """Deploy to every endpoint, bake, roll back on failure (aliases untouched)."""

    promotion = promote_blue_green(settings_from(overrides), model_uri)
    publish_artifact(
        "table", "bake", [b.to_dict() for b in promotion.bake], "bake figures per endpoint"
    )
    return promotion


@task(name="move-aliases", cache_policy=NO_CACHE)
def move_champion(
    version: str, overrides: dict[str, Any] | None = None, endpoints: list[str] | None = None
) -> AliasMove:
    """``champion`` → the new version, ``previous`` → the old one, ``challenger`` removed;
    if the registry refuses, ``endpoints`` (default every one) are rolled back
    (:class:`~citeops.tasks.release.promote.AliasMoveFailed`)."""

    return move_aliases_or_roll_back(settings_from(overrides), version, endpoints)


@task(name="start-online-phase", cache_policy=NO_CACHE)
def start_online_phase(version: str, overrides: dict[str, Any] | None = None) -> Experiment:
    """The gated challenger in its online phase (``promote.online``: ab -> split, shadow)
    on every endpoint, all or nothing; the champion keeps serving."""

    settings = settings_from(overrides)
    mode = online_mode(settings)
    assert mode is not None, "start_online_phase with promote.online = none"
    plan = ExperimentPlan(version, mode, settings.promote.online_share)
    with admin_client(settings) as client:
        return start_experiment(settings, client, serving_endpoints(settings), plan)


@task(name="review-online-phase", cache_policy=NO_CACHE)
def review_online_phase(settings: Settings) -> dict[str, Any]:
    """The A/B report of the running online phase and, on its verdict, promotion
    (bake, auto-rollback, aliases, record) or abort; ``{"active": False}`` when none runs."""

    with admin_client(settings) as client:
        review = review_experiment(settings, client, serving_endpoints(settings))
    if review.get("report"):
        text = report_text(review["report"])
        publish_artifact("markdown", "online-phase", f"```\n{text}\n```", "A/B report")
    return review
