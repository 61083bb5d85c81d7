"""Typed parameters of the flows, so the Prefect UI renders a form (fields, defaults,
descriptions) where a free-form JSON object used to be.

The override models are the settings sections with every field optional (``None``: not
given, the profile's value stands); they are built from the sections themselves, so a new
setting is a new form field without a second list to keep in step.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from citeops.configs.settings import (
    EvaluateSettings,
    GateSettings,
    PromoteSettings,
    TrainSettings,
)

JsonScalar = str | int | float | bool | None
OnlineMode = Literal["none", "shadow", "ab"]


class RetrainTrigger(BaseModel):
    """What started a retrain run (the ``monitor`` flow's decision), recorded with it; the
    decision's other keys (its record, the run it started) are not part of it."""

    model_config = ConfigDict(extra="ignore")

    causes: list[str] = Field(default_factory=list, description="e.g. feedback, drift, forced")
    reasons: list[str] = Field(default_factory=list, description="one sentence per cause")
    decided_at: str | None = Field(None, description="when the decision was made (ISO 8601)")
    inputs: dict[str, JsonScalar | list[JsonScalar] | dict[str, JsonScalar]] = Field(
        default_factory=dict, description="the figures the decision was made from"
    )


@cache
def overrides_of(section: type[BaseModel]) -> type[BaseModel]:
    """``section`` with every field optional and defaulting to None (not overridden)."""
    fields: dict[str, Any] = {
        name: (info.annotation | None, Field(None, description=info.description))
        for name, info in section.model_fields.items()
    }
    return create_model(
        f"{section.__name__.removesuffix('Settings')}Overrides",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Overrides of the {section.__name__} for this run (empty: the profile's).",
        **fields,
    )


TrainOverrides = overrides_of(TrainSettings)
EvaluateOverrides = overrides_of(EvaluateSettings)
GateOverrides = overrides_of(GateSettings)
PromoteOverrides = overrides_of(PromoteSettings)


class RetrainOverrides(BaseModel):
    """Settings sections a retrain run may override (what is not given keeps the profile's)."""

    model_config = ConfigDict(extra="forbid")

    train: TrainOverrides | None = None  # type: ignore[valid-type]
    evaluate: EvaluateOverrides | None = None  # type: ignore[valid-type]
    gate: GateOverrides | None = None  # type: ignore[valid-type]
    promote: PromoteOverrides | None = None  # type: ignore[valid-type]


def given(model: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    """The fields actually given, as the nested dict the settings take."""
    if model is None:
        return {}
    if isinstance(model, dict):
        return model
    return model.model_dump(exclude_none=True)
