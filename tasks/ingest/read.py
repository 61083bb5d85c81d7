"""Reading an object as prepared chunks: stream its lines, parse them, validate them with
the kind's Great Expectations suite and key feedback rows by their pair.

A :class:`ChunkSource` gives each object's prepared chunks, then the identity of the bytes
read. :class:`InlineReader` does the work in this process; the reader child process
(:class:`citeops.tasks.ingest.prefetch.Prefetcher`) does the same work in a second process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from citeops.tasks.ingest.dedupe import add_pair_keys
from citeops.tasks.ingest.leakage import benchmark_test_claims
from citeops.tasks.ingest.parse import ParsedChunk, Reject, parse_lines
from citeops.tasks.ingest.sources import LineReader, LogObject, open_object
from citeops.tasks.ingest.validate import BatchValidator
from citeops.tasks.store.schema import utc_now

if TYPE_CHECKING:
    from datetime import datetime

    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.validate import BatchValidator


@dataclass
class PreparedChunk:
    """Consecutive lines of one object after parsing and validation, ready to store."""

    lines: int
    rows: list[dict[str, Any]]
    rejects: list[Reject]
    validation: dict[str, Any] | None


class ChunkSource(Protocol):
    """Where an ingest takes objects' prepared chunks from."""

    def chunks(self, obj: LogObject) -> Iterator[PreparedChunk]:
        """The prepared chunks of ``obj``, streamed."""
        ...

    def identity(self, obj: LogObject) -> tuple[int, str]:
        """``(size, etag)`` of the bytes the chunks of ``obj`` came from (after them)."""
        ...


class ObjectReader:
    """Streams one object as parsed chunks of ``ingest.chunk_lines`` lines; after the
    chunks are consumed, :meth:`identity` gives the bytes' size and ETag / SHA-256."""

    def __init__(self, settings: Settings, obj: LogObject) -> None:
        self.settings = settings
        self.obj = obj
        self._reader: LineReader | None = None

    def chunks(self) -> Iterator[ParsedChunk]:
        size = self.settings.ingest.chunk_lines
        with open_object(self.settings, self.obj) as stream:
            self._reader = LineReader(stream, self.settings.ingest.max_line_bytes)
            lines = iter(self._reader)
            while batch := list(islice(lines, size)):
                yield parse_lines(self.obj.kind, batch)

    def identity(self) -> tuple[int, str]:
        """``(size, etag)`` of the bytes read (S3: the listed ETag)."""
        assert self._reader is not None, "identity() before chunks() were read"
        etag = self.obj.etag or self._reader.sha256.hexdigest()
        return self._reader.bytes_read, etag


def prepare_chunk(
    validator: BatchValidator,
    kind: str,
    parsed: ParsedChunk,
    now: datetime,
    leaked_claims: frozenset[str],
) -> PreparedChunk:
    """Validate a parsed chunk with the kind's GX suite; key feedback rows by their pair."""
    checked = validator.validate(kind, parsed.rows, now)
    if kind == "feedback":
        add_pair_keys(checked.rows, leaked_claims)
    return PreparedChunk(
        lines=parsed.lines,
        rows=checked.rows,
        rejects=parsed.rejects + checked.rejects,
        validation=checked.result,
    )


class InlineReader:
    """A :class:`ChunkSource` that reads, parses and validates in this process. Each call
    of :meth:`chunks` reads the object afresh, so a retried object is read again whole."""

    def __init__(
        self, settings: Settings, validator: BatchValidator, leaked_claims: frozenset[str]
    ) -> None:
        self._settings = settings
        self._validator = validator
        self._leaked_claims = leaked_claims
        self._readers: dict[str, ObjectReader] = {}

    @classmethod
    def build(cls, settings: Settings) -> InlineReader:
        """Build the GX validator and load the benchmark test claims (seconds: once a run).

        Raises:
            DataFileError: the benchmark test sets for the leakage guard are missing.
        """

        leaked_claims = benchmark_test_claims(settings)
        return cls(settings, BatchValidator(settings), leaked_claims)

    def chunks(self, obj: LogObject) -> Iterator[PreparedChunk]:
        reader = self._readers[obj.uri] = ObjectReader(self._settings, obj)
        now = utc_now()
        for parsed in reader.chunks():
            yield prepare_chunk(self._validator, obj.kind, parsed, now, self._leaked_claims)

    def identity(self, obj: LogObject) -> tuple[int, str]:
        return self._readers.pop(obj.uri).identity()


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Fewer cyclic-GC passes while chunks of tens of thousands of rows are alive: with
    the default thresholds the collector rescans them over and over (about a quarter of
    the CPU time of a large ingest). Memory stays bounded: rows hold no cycles."""
    old = gc.get_threshold()
    gc.set_threshold(50_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*old)
