"""The current window: production queries since a date (or in the last N days).

Sources: a folder of query-log JSONL files given explicitly (``--current DIR``:
``queries/date=YYYY-MM-DD/<part>.jsonl`` partitions or a plain folder of ``*.jsonl``),
else the queries the ingestion stage accepted into the curated store (run ``citeops
ingest`` or the ``monitor`` flow, which ingests first).

Query-log line: ``request_id``, ``datetime``, ``claim``, ``evidence``, ``model_version``,
``slot``, ``prediction``, ``probabilities`` {label: p}, ``latency_ms``. Files whose name
starts with ``.`` or ends with ``.tmp`` are being written and are skipped. Lines that are
not JSON objects with a claim and an evidence are counted in ``skipped_lines``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.errors import CiteopsError
from citeops.tasks.times import parse_utc_or_none

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

logger = logging.getLogger(__name__)

PARTITION_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


class QueryWindowError(CiteopsError):
    """The current window cannot be read (missing folder, unsupported log root)."""


@dataclass
class QueryWindow:
    """Production queries, column by column."""

    claims: list[str] = field(default_factory=list)
    evidences: list[str] = field(default_factory=list)
    predictions: list[str | None] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)  # max probability; NaN if absent
    model_versions: list[str | None] = field(default_factory=list)
    source: str = ""
    since: str | None = None
    files: int = 0
    skipped_lines: int = 0

    def __len__(self) -> int:
        return len(self.claims)

    def confidence_array(self) -> np.ndarray:
        return np.asarray(self.confidences, dtype=float)

    def add(self, row: Mapping[str, Any]) -> bool:
        """Append one query-log record; ``False`` (and counted as skipped) when unusable."""
        claim, evidence = row.get("claim"), row.get("evidence")
        if not isinstance(claim, str) or not isinstance(evidence, str) or not claim or not evidence:
            self.skipped_lines += 1
            return False
        probs = row.get("probabilities")
        prediction = row.get("prediction")
        confidence = math.nan
        if isinstance(probs, Mapping) and probs:
            try:
                values = {str(k): float(v) for k, v in probs.items()}
            except (TypeError, ValueError):
                values = {}
            if values:
                best = max(values, key=values.__getitem__)
                confidence = values[best]
                prediction = prediction if isinstance(prediction, str) else best
        self.claims.append(claim)
        self.evidences.append(evidence)
        self.predictions.append(prediction if isinstance(prediction, str) else None)
        self.confidences.append(confidence)
        version = row.get("model_version")
        self.model_versions.append(None if version is None else str(version))
        return True

    def describe(self) -> dict[str, Any]:
        versions = {v for v in self.model_versions if v}
        return {
            "source": self.source,
            "since": self.since,
            "rows": len(self),
            "files": self.files,
            "skipped_lines": self.skipped_lines,
            "model_versions": sorted(versions),
        }


def window_from_records(
    records: Iterable[Mapping[str, Any]], source: str = "records"
) -> QueryWindow:
    """A window of query-log records (mappings with the query-log fields)."""
    window = QueryWindow(source=source)
    for row in records:
        window.add(row)
    return window


def _partition_date(path: Path) -> date | None:
    for part in path.parts:
        match = PARTITION_RE.match(part)
        if match:
            return date.fromisoformat(match.group(1))
    return None


def query_log_files(folder: Path, since: datetime | None = None) -> list[Path]:
    """Complete ``*.jsonl`` files under ``folder``, skipping partitions before ``since``."""
    files = []
    for path in sorted(folder.rglob("*.jsonl")):
        relative = path.relative_to(folder)
        if any(p.startswith(".") for p in relative.parts) or path.name.endswith(".tmp"):
            continue
        day = _partition_date(relative)
        if since is not None and day is not None and day < since.date():
            continue
        files.append(path)
    return files


def _lines(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle


def read_query_folder(folder: Path | str, since: datetime | None = None) -> QueryWindow:
    """Read every complete query-log file under ``folder`` (queries at or after ``since``).

    Raises:
        QueryWindowError: the folder does not exist.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise QueryWindowError(f"{root}: no such folder of query logs")
    if (root / "queries").is_dir():
        root = root / "queries"
    files = query_log_files(root, since)
    window = QueryWindow(
        source=str(root), files=len(files), since=since.isoformat() if since else None
    )
    loads = json.loads
    for line in _lines(files):
        if not line.strip():
            continue
        try:
            row = loads(line)
        except ValueError:
            window.skipped_lines += 1
            continue
        if not isinstance(row, dict):
            window.skipped_lines += 1
            continue
        if since is not None:
            moment = parse_utc_or_none(row.get("datetime"))
            if moment is not None and moment < since:
                continue
        window.add(row)
    logger.info(
        "current window: %d queries from %d files under %s (%d lines skipped)",
        len(window),
        window.files,
        root,
        window.skipped_lines,
    )
    return window


def window_start(settings: Settings, since: datetime | None = None) -> datetime:
    """``since``, else ``drift.window_days`` days before now (aware UTC)."""
    return since or datetime.now(UTC) - timedelta(days=settings.drift.window_days)


def load_current_window(
    settings: Settings, current_dir: Path | str | None = None, since: datetime | None = None
) -> QueryWindow:
    """The current window: the query logs under ``current_dir`` when given, else the
    queries the ingestion stage stored in the curated store since ``since`` (default: the
    last ``drift.window_days`` days).

    Raises:
        QueryWindowError: ``current_dir`` does not exist.
        StoreError: the curated store cannot be reached.
    """
    if current_dir is not None:
        return read_query_folder(current_dir, since)
    from citeops.tasks.store.queries import load_queries

    start = window_start(settings, since)
    window = window_from_records(load_queries(settings, start), "query store")
    window.since = start.isoformat()
    logger.info("current window: %d queries in the query store since %s", len(window), start)
    return window
