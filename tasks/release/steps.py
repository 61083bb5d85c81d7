"""Prefect tasks of the release stage: thin wrappers over the functions beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.stepkit import publish_artifact, settings_from

if TYPE_CHECKING:
    from citeops.tasks.release.promote import AliasMove, Promotion


@task(name="promote-blue-green", cache_policy=NO_CACHE)
def promote_candidate(model_uri: str, overrides: dict[str, Any] | None = None) -> Promotion:
    """Deploy to every endpoint, bake, roll back on failure (aliases untouched)."""
    from citeops.tasks.release.promote import promote_blue_green

    promotion = promote_blue_green(settings_from(overrides), model_uri)
    publish_artifact(
        "table", "bake", [b.to_dict() for b in promotion.bake], "bake figures per endpoint"
    )
    return promotion


@task(name="move-aliases", cache_policy=NO_CACHE)
def move_champion(version: str, overrides: dict[str, Any] | None = None) -> AliasMove:
    """``champion`` → the new version, ``previous`` → the old one, ``challenger`` removed."""
    from citeops.tasks.release.promote import move_aliases

    return move_aliases(settings_from(overrides), version)
