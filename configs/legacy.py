"""Old setting names, kept working for one release with a warning.

Each settings source (keyword arguments, ``CITEOPS_*`` variables, the profile file) is
migrated on its own before the sources are merged, so an old name keeps its source's
priority: ``CITEOPS_SERVE__ENDPOINTS`` still beats a profile's ``promote.endpoints``.
Within one source, the new name wins over the old one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from citeops.configs.base import env_name

# old (section, field) -> new (section, field)
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("serve", "endpoints"): ("promote", "endpoints"),
    ("serve", "parity_pairs"): ("registry", "parity_pairs"),
    ("serve", "parity_max_prob_diff"): ("registry", "parity_max_prob_diff"),
    ("gate", "bootstrap_resamples"): ("stats", "bootstrap_resamples"),
    ("gate", "seed"): ("stats", "bootstrap_seed"),
}
# old place -> why it is gone (its value is ignored)
REMOVED: dict[tuple[str, ...], str] = {
    ("model", "labels"): "the labels are fixed by the data contract (SUPPORT, NEI, REFUTE) "
    "and training never read this setting; remove it",
    ("train", "cost_per_device_hour"): "the rate of a device-hour is now per accelerator "
    "kind: cost.device_hour_usd (e.g. {cpu: 0.09, cuda: 0.526})",
    ("bench",): "the benchmark settings moved out of the product settings to "
    "benchmarks/settings.py; `citeops bench` reads CITEOPS_BENCH__* itself",
}
NEXT_RELEASE = "the old name stops working in the next release"

# decodes a raw value moved to (section, field), e.g. an environment variable's JSON text
Decode = Callable[[str, str, Any], Any]


class DeprecatedSettingWarning(FutureWarning):
    """A setting was given under a name that moved or was removed (shown to users by
    default, unlike DeprecationWarning)."""


def migrate(data: dict[str, Any], decode: Decode | None = None) -> dict[str, Any]:
    """``data`` (one source's nested settings) with every old name moved to its new place
    and every removed one dropped, each with a :class:`DeprecatedSettingWarning` naming
    both names and both environment variables. ``data`` itself is not changed."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for (section, name), (new_section, new_name) in MOVED.items():
        old = out.get(section)
        if not isinstance(old, dict) or name not in old:
            continue
        value = old.pop(name)
        target = out.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # not a mapping: validation names the problem
        if new_name in target:
            _warn(f"{_named(section, name)} is ignored: {_named(new_section, new_name)} is set")
            continue
        target[new_name] = decode(new_section, new_name, value) if decode else value
        _warn(f"{_named(section, name)} is deprecated: use {_named(new_section, new_name)}")
    for loc, why in REMOVED.items():
        parent = out
        for part in loc[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and loc[-1] in parent:
            del parent[loc[-1]]
            _warn(f"{_named(*loc)} was removed: {why}")
    return out


def _named(*loc: str) -> str:
    return f"setting {'.'.join(loc)} ({env_name(loc)})"


def _warn(message: str) -> None:
    warnings.warn(f"{message}; {NEXT_RELEASE}", DeprecatedSettingWarning, stacklevel=2)
