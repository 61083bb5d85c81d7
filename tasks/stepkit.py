"""Shared helpers of the stages' Prefect tasks: settings from overrides, artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from citeops.configs.settings import load_settings

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


def settings_from(overrides: dict[str, Any] | None = None) -> Settings:
    """The settings with a flow run's overrides applied (each task loads its own)."""

    return load_settings(**(overrides or {}))


def publish_artifact(kind: str, key: str, body: Any, description: str) -> None:
    """A Prefect artifact when running inside a flow run (plain calls skip it)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    if kind == "table":
        create_table_artifact(table=body, key=key, description=description)
    else:
        create_markdown_artifact(markdown=body, key=key, description=description)
