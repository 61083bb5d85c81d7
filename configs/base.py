"""What every settings section shares: the section base class, the one error type, and how
a setting's place maps to its environment variable and to a one-line message."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

ENV_PREFIX = "CITEOPS_"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the setting and says why."""


class Section(BaseModel):
    """A settings section: unknown keys are refused, assignments validated, and each
    field's docstring is its description (the settings reference is generated from it)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )


def env_name(loc: tuple[object, ...], prefix: str = ENV_PREFIX) -> str:
    """The environment variable of the setting at ``loc``:
    ``("train", "epochs")`` -> ``CITEOPS_TRAIN__EPOCHS``."""
    return prefix + "__".join(str(part).upper() for part in loc)


def describe(error: ValidationError, section: tuple[str, ...] = ()) -> str:
    """One line naming the first bad setting (dotted, under ``section``), its environment
    variable, and why it was refused; the count of further problems, if any."""
    first = error.errors()[0]
    loc = section + tuple(str(p) for p in first["loc"] if not isinstance(p, int))
    loc = loc or ("settings",)
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"setting {'.'.join(loc)} ({env_name(loc)}): {first['msg']}{suffix}"


def drop_none(values: dict[str, object]) -> dict[str, object]:
    """``values`` without ``None`` leaves (nested dicts too; emptied dicts dropped), so CLI
    options left unset pass through to the lower-priority sources."""
    cleaned: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = drop_none(value)
            if nested:
                cleaned[key] = nested
        elif value is not None:
            cleaned[key] = value
    return cleaned
