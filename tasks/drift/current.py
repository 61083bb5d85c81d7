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
import random
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from citeops.tasks.errors import CiteopsError
from citeops.tasks.times import parse_utc_or_none

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

logger = logging.getLogger(__name__)

PARTITION_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


class QueryWindowError(CiteopsError):
    """The current window cannot be read (missing folder, unsupported log root)."""


DEFAULT_SAMPLE_SIZE = 5000  # drift.text_sample_size's default; callers pass the setting
LENGTH_CACHE_TEXTS = 20_000  # texts whose token counts are remembered (evidence recurs)


@dataclass
class QueryWindow:
    """Production queries, column by column, in memory that does not grow with the texts:
    per row only token lengths, prediction, confidence, model version and 64-bit hashes of
    claim and evidence are kept (duplicates collapse when counting distinct rows); the texts
    themselves only for a seeded uniform sample of ``sample_size`` rows (reservoir
    sampling), which is all the text checks read. A window of a million queries takes tens
    of MB, whatever their texts' size."""

    source: str = ""
    since: str | None = None
    files: int = 0
    skipped_lines: int = 0
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 0
    claim_lengths: array[int] = field(default_factory=lambda: array("l"))
    evidence_lengths: array[int] = field(default_factory=lambda: array("l"))
    predictions: list[str | None] = field(default_factory=list)
    confidences: array[float] = field(default_factory=lambda: array("d"))  # max p; NaN if absent
    model_versions: list[str | None] = field(default_factory=list)
    claim_hashes: array[int] = field(default_factory=lambda: array("q"))
    evidence_hashes: array[int] = field(default_factory=lambda: array("q"))
    _sample: list[tuple[int, str, str]] = field(default_factory=list, repr=False)
    _rng: random.Random | None = field(default=None, repr=False)
    _lengths: dict[str, int] = field(default_factory=dict, repr=False)
    _names: dict[str, str] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.claim_lengths)

    def confidence_array(self) -> np.ndarray:
        return np.array(self.confidences, dtype=float)

    def claim_length_array(self) -> np.ndarray:
        """Whitespace token counts of every row's claim."""
        return np.array(self.claim_lengths, dtype=np.int64)

    def evidence_length_array(self) -> np.ndarray:
        """Whitespace token counts of every row's evidence."""
        return np.array(self.evidence_lengths, dtype=np.int64)

    @property
    def sample_claims(self) -> list[str]:
        """The claims of the sampled rows, in row order."""
        return [claim for _, claim, _ in sorted(self._sample)]

    @property
    def sample_evidences(self) -> list[str]:
        """The evidences of the sampled rows, in row order (aligned with the claims)."""
        return [evidence for _, _, evidence in sorted(self._sample)]

    def distinct_rows(self) -> int:
        """Distinct (claim, evidence) pairs, counted by their hashes."""
        if not self:
            return 0
        pairs = np.stack(
            [
                np.array(self.claim_hashes, np.int64),
                np.array(self.evidence_hashes, np.int64),
            ],
            axis=1,
        )
        return len(np.unique(pairs, axis=0))

    def distinct_claims(self) -> int:
        return len(np.unique(np.array(self.claim_hashes, np.int64))) if self else 0

    def distinct_evidences(self) -> int:
        return len(np.unique(np.array(self.evidence_hashes, np.int64))) if self else 0

    def _length(self, text: str) -> int:
        n = self._lengths.get(text)
        if n is None:
            if len(self._lengths) >= LENGTH_CACHE_TEXTS:
                self._lengths.clear()
            n = self._lengths[text] = len(text.split())
        return n

    def _keep_sample(self, row: int, claim: str, evidence: str) -> None:
        """Reservoir sampling (algorithm R): every row is in the sample with the same
        probability, seeded, in one pass of unknown length."""
        if len(self._sample) < self.sample_size:
            self._sample.append((row, claim, evidence))
            return
        if self._rng is None:
            self._rng = random.Random(self.seed)
        slot = self._rng.randrange(row + 1)
        if slot < self.sample_size:
            self._sample[slot] = (row, claim, evidence)

    def _name(self, value: Any) -> str | None:
        """``value`` as a string, one object per distinct value (labels, versions)."""
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        return self._names.setdefault(text, text)

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
        self._keep_sample(len(self), claim, evidence)
        self.claim_lengths.append(self._length(claim))
        self.evidence_lengths.append(self._length(evidence))
        self.claim_hashes.append(hash(claim))
        self.evidence_hashes.append(hash(evidence))
        self.predictions.append(self._name(prediction) if isinstance(prediction, str) else None)
        self.confidences.append(confidence)
        self.model_versions.append(self._name(row.get("model_version")))
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
    records: Iterable[Mapping[str, Any]],
    source: str = "records",
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> QueryWindow:
    """A window of query-log records (mappings with the query-log fields); the texts of
    ``sample_size`` of them kept (seeded by ``seed``)."""
    window = QueryWindow(source=source, sample_size=sample_size, seed=seed)
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


def _lines(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as handle:
            yield from handle


def _parse(line: bytes) -> Any:
    """One JSON line; invalid UTF-8 replaced (as a text reader would) rather than refused.

    Raises:
        ValueError: not JSON.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8", errors="replace"))


def read_query_folder(
    folder: Path | str,
    since: datetime | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> QueryWindow:
    """Read every complete query-log file under ``folder`` (queries at or after ``since``),
    streaming: memory holds the per-row figures of :class:`QueryWindow` and the texts of
    ``sample_size`` rows (seeded by ``seed``), never the whole files.

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
        source=str(root),
        files=len(files),
        since=since.isoformat() if since else None,
        sample_size=sample_size,
        seed=seed,
    )
    for line in _lines(files):
        if not line.strip():
            continue
        try:
            row = _parse(line)
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
    size, seed = settings.drift.text_sample_size, settings.drift.seed
    if current_dir is not None:
        return read_query_folder(current_dir, since, size, seed)
    from citeops.tasks.store.queries import load_queries

    start = window_start(settings, since)
    window = window_from_records(load_queries(settings, start), "query store", size, seed)
    window.since = start.isoformat()
    logger.info("current window: %d queries in the query store since %s", len(window), start)
    return window
