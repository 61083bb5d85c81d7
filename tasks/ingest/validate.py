"""Batch validation of parsed log lines with Great Expectations (1.x fluent API).

The suites are readable YAML files beside this module (``suites/<kind>.yaml``), versioned
with the code and by their ``version`` field. A :class:`BatchValidator` is built once per
run (importing GX costs seconds, so it happens here, not at import time) and validates one
chunk of rows at a time: rows an expectation marks unexpected are returned as rejects with
that expectation's ``reason``; a compact result (per expectation: success and counts) is
returned for storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from citeops.tasks.ingest.parse import _EPOCH, Reject

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

SUITES_DIR = Path(__file__).parent / "suites"
KINDS = ("feedback", "queries")


@dataclass(frozen=True)
class SuiteSpec:
    """A suite as written in its YAML file."""

    name: str
    version: int
    expectations: tuple[dict[str, Any], ...]

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(e["kwargs"]["column"] for e in self.expectations))


@cache
def load_suite(kind: str) -> SuiteSpec:
    """Read ``suites/<kind>.yaml``."""
    data = yaml.safe_load((SUITES_DIR / f"{kind}.yaml").read_text())
    return SuiteSpec(data["name"], int(data["version"]), tuple(data["expectations"]))


@dataclass
class ValidatedChunk:
    """Rows that passed, rows rejected by an expectation, and the stored result."""

    rows: list[dict[str, Any]]
    rejects: list[Reject] = field(default_factory=list)
    result: dict[str, Any] | None = None  # None when there were no rows to validate


def _class_name(expectation_type: str) -> str:
    return "".join(part.capitalize() for part in expectation_type.split("_"))


class BatchValidator:
    """Runs the ``feedback`` and ``queries`` suites over pandas batches of parsed rows."""

    def __init__(self, settings: Settings) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._settings = settings
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = self._context.data_sources.add_pandas("citeops-ingest")
        self._definitions: dict[str, Any] = {}
        self._order: dict[str, dict[tuple[str, str], int]] = {}
        for kind in KINDS:
            spec = load_suite(kind)
            expectations = []
            for item in spec.expectations:
                cls = getattr(gx.expectations, _class_name(item["type"]))
                expectations.append(cls(**item["kwargs"], meta=item.get("meta") or {}))
            suite = self._context.suites.add(
                gx.ExpectationSuite(name=f"{spec.name}-v{spec.version}", expectations=expectations)
            )
            batch = source.add_dataframe_asset(kind).add_batch_definition_whole_dataframe("chunk")
            self._definitions[kind] = self._context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{kind}-chunk", data=batch, suite=suite)
            )
            self._order[kind] = {
                (item["type"], item["kwargs"]["column"]): i
                for i, item in enumerate(spec.expectations)
            }

    def parameters(self, now: datetime) -> dict[str, Any]:
        """Expectation parameters from settings and the current time (naive UTC)."""
        limits = self._settings.ingest
        latest = now + timedelta(seconds=limits.max_future_skew_seconds)
        return {
            "max_claim_chars": limits.max_claim_chars,
            "max_evidence_chars": limits.max_evidence_chars,
            "max_ts": (latest - _EPOCH).total_seconds(),
        }

    def validate(self, kind: str, rows: list[dict[str, Any]], now: datetime) -> ValidatedChunk:
        """Validate ``rows`` (parsed lines of one ``kind``); ``now`` is naive UTC."""
        if not rows:
            return ValidatedChunk(rows=[])
        import pandas as pd

        spec = load_suite(kind)
        frame = pd.DataFrame({col: [row[col] for row in rows] for col in spec.columns})
        outcome = self._definitions[kind].run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=self.parameters(now),
            result_format={"result_format": "COMPLETE", "include_unexpected_rows": False},
        )
        first_reason: dict[int, tuple[str, str]] = {}
        summary = []
        order = self._order[kind]
        results = sorted(
            outcome.results,
            key=lambda r: order[
                (r.expectation_config.type, r.expectation_config.kwargs.get("column"))
            ],
        )
        for item in results:
            config = item.expectation_config
            reason = (config.meta or {})["reason"]
            result = item.result or {}
            unexpected = list(result.get("unexpected_index_list") or [])
            column = config.kwargs.get("column")
            if item.exception_info and item.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"expectation {config.type} on {column} failed to run: "
                    f"{item.exception_info.get('exception_message')}"
                )
            for position in unexpected:
                first_reason.setdefault(int(position), (reason, f"{column}: {config.type}"))
            summary.append(
                {
                    "expectation": config.type,
                    "column": column,
                    "reason": reason,
                    "success": bool(item.success),
                    "element_count": result.get("element_count"),
                    "unexpected_count": result.get("unexpected_count", len(unexpected)),
                }
            )
        good: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for position, row in enumerate(rows):
            failed = first_reason.get(position)
            if failed is None:
                good.append(row)
            else:
                rejects.append(Reject(row["line_no"], failed[0], failed[1], row["raw"]))
        result = {
            "suite": spec.name,
            "suite_version": spec.version,
            "success": bool(outcome.success),
            "rows": len(rows),
            "unexpected_rows": len(rejects),
            "expectations": summary,
        }
        return ValidatedChunk(rows=good, rejects=rejects, result=result)


def suite_summary() -> list[dict[str, Any]]:
    """Every suite with its version and (type, column, reason) lines, for reports."""
    out = []
    for kind in KINDS:
        spec = load_suite(kind)
        out.append(
            {
                "suite": spec.name,
                "version": spec.version,
                "expectations": [
                    f"{e['type']}({e['kwargs']['column']}) -> {e['meta']['reason']}"
                    for e in spec.expectations
                ],
            }
        )
    return out
