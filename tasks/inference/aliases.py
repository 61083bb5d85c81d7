"""Alias names of the registered model and the URIs built from them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


def model_uri_for(settings: Settings, version: str) -> str:
    """``models:/<registered model>/<version>``."""
    return f"models:/{settings.mlflow.registered_model}/{version}"


def alias_uri(settings: Settings, alias: str = CHAMPION) -> str:
    """``models:/<registered model>@<alias>`` (the champion by default)."""
    return f"models:/{settings.mlflow.registered_model}@{alias}"
