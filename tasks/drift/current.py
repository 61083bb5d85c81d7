"""The current window: production queries since a date (or in the last N days).

Sources, in order: a folder of query-log JSONL files given explicitly (``--current DIR``:
``queries/date=YYYY-MM-DD/<part>.jsonl`` partitions or a plain folder of ``*.jsonl``);
the curated query store of the ingestion stage when it provides a loader
(:func:`store_query_loader`); else the ``queries/`` folder under a local log root.

Query-log line: ``request_id``, ``datetime``, ``claim``, ``evidence``, ``model_version``,
``slot``, ``prediction``, ``probabilities`` {label: p}, ``latency_ms``. Files whose name
starts with ``.`` or ends with ``.tmp`` are being written and are skipped. Lines that are
not JSON objects with a claim and an evidence are counted in ``skipped_lines``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

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
        if isinstance(probs, str):  # a store may keep the mapping as JSON text
            try:
                probs = json.loads(probs)
            except ValueError:
                probs = None
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


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
            moment = _parse_time(row.get("datetime"))
            if moment is not None and moment < since:
                continue
        window.add(row)
    return window


STORE_MODULES = ("citeops.tasks.store.queries", "citeops.tasks.store")


def store_function(*names: str) -> Callable[..., Any] | None:
    """The first of ``names`` found in the curated store's reader modules, else ``None``.

    SEAM: the curated store belongs to the ingestion area; its readers
    (``load_queries(settings, since)``, ``accepted_feedback_since(settings, since)``) are
    used as soon as they exist, and until then the callers fall back to the log folders.
    """
    import importlib

    for module_name in STORE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            found = getattr(module, name, None)
            if callable(found):
                return found
    return None


def store_query_loader() -> Callable[..., Any] | None:
    """The ingestion stage's ``load_queries(settings, since)``, if it exists (a seam)."""
    return store_function("load_queries", "queries_since")


def window_start(settings: Settings, since: datetime | None = None) -> datetime:
    return since or datetime.now(UTC) - timedelta(days=settings.drift.window_days)


def load_current_window(
    settings: Settings, current_dir: Path | str | None = None, since: datetime | None = None
) -> QueryWindow:
    """The current window from ``current_dir``, else the query store, else (the store is
    absent or holds no queries in the window) the ``queries/`` folder of a local log root.

    Raises:
        QueryWindowError: no source can be read.
    """
    if current_dir is not None:
        return read_query_folder(current_dir, since)
    start = window_start(settings, since)
    loader = store_query_loader()
    if loader is not None:
        window = window_from_records(_as_mappings(loader(settings, start)), "query store")
        window.since = start.isoformat()
        if len(window) or settings.is_s3_log_root:
            return window
    if settings.is_s3_log_root:
        raise QueryWindowError(
            f"log root {settings.log_root} is on S3 and the query store is not available; "
            "pass --current DIR with a local copy of the query logs"
        )
    root = Path(str(settings.log_root).removeprefix("file://")) / "queries"
    if not root.is_dir():
        return QueryWindow(source=str(root), since=start.isoformat())
    return read_query_folder(root, start)


def _as_mappings(rows: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    """Store rows may be dicts, dataclasses or ORM objects; read them as mappings."""
    for row in rows:
        if isinstance(row, Mapping):
            yield row
        elif hasattr(row, "_mapping"):
            yield row._mapping
        else:
            yield vars(row)
