"""What a run did: one :class:`ObjectResult` per object, summed into an
:class:`IngestReport` whose :meth:`~IngestReport.to_dict` is the JSON that ``citeops
ingest --json`` prints and the ``ingest-feedback`` flow returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from citeops.tasks.ingest.sources import SkippedEntry
from citeops.tasks.store.writer import StoreCounts

if TYPE_CHECKING:
    from citeops.tasks.ingest.plan import ChangedObject

REPORT_KEYS = (
    "objects",
    "lines",
    "accepted",
    "duplicates",
    "conflicts",
    "quarantined",
    "leaked",
    "reasons",
    "new_feedback_since_last_training",
)
SKIPPED_KEY = "skipped"  # present only when entries were skipped: [{"uri", "reason"}]
TAKEN_BY_ANOTHER_RUN = "ingested by another run at the same time"


@dataclass
class ObjectResult:
    """What one object's lines became; ``skipped`` says why nothing was stored (another
    run committed the object first)."""

    uri: str
    kind: str
    counts: StoreCounts
    reasons: Counter[str]
    skipped: str | None = None


@dataclass
class IngestReport:
    """The run's report; :meth:`to_dict` is the JSON printed and returned."""

    objects: int = 0
    counts: StoreCounts = field(default_factory=StoreCounts)
    reasons: Counter[str] = field(default_factory=Counter)
    new_feedback_since_last_training: int = 0
    changed: list[ChangedObject] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    source: str = ""
    seconds: float = 0.0

    def add(self, result: ObjectResult) -> None:
        """Count one object's result (a skipped object is listed, not counted)."""
        if result.skipped is not None:
            self.skipped.append(SkippedEntry(result.uri, result.skipped))
            return
        self.objects += 1
        self.counts.add(result.counts)
        self.reasons.update(result.reasons)

    def to_dict(self) -> dict[str, Any]:
        """The :data:`REPORT_KEYS`, then ``skipped`` when any entry was skipped."""
        c = self.counts
        payload: dict[str, Any] = {
            "objects": self.objects,
            "lines": c.lines,
            "accepted": c.accepted,
            "duplicates": c.duplicates,
            "conflicts": c.conflicts,
            "quarantined": c.quarantined,
            "leaked": c.leaked,
            "reasons": dict(sorted(self.reasons.items())),
            "new_feedback_since_last_training": self.new_feedback_since_last_training,
        }
        if self.skipped:
            payload[SKIPPED_KEY] = [{"uri": s.uri, "reason": s.reason} for s in self.skipped]
        return payload

    def to_markdown(self) -> str:
        """The report as a Markdown table (the Prefect artifact)."""
        d = self.to_dict()
        lines = [
            f"# Feedback ingest: `{self.source}`",
            "",
            "| measure | value |",
            "| --- | ---: |",
        ]
        lines += [f"| {k} | {d[k]:,} |" for k in REPORT_KEYS if k != "reasons"]
        if d["reasons"]:
            lines += ["", "| quarantine reason | lines |", "| --- | ---: |"]
            lines += [f"| {k} | {v:,} |" for k, v in d["reasons"].items()]
        if self.changed:
            lines += ["", "Objects changed after ingestion (not re-read):", ""]
            lines += [f"- `{c.uri}`" for c in self.changed]
        if self.skipped:
            lines += ["", "Entries skipped (not ingested):", ""]
            lines += [f"- `{s.uri}`: {s.reason}" for s in self.skipped]
        if self.seconds:
            lines += ["", f"{self.seconds:.1f} s"]
        return "\n".join(lines)
