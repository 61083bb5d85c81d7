"""Query and feedback logs: date-partitioned JSONL parts under a local folder or S3.

Layout under the log root (``settings.log_root``)::

    queries/date=YYYY-MM-DD/<part>.jsonl
    feedback/date=YYYY-MM-DD/<part>.jsonl

A background thread owns the files; the request path only puts a dict on a queue. A part
is written under a hidden name (``.<part>.jsonl.tmp``) and published when it is complete:
renamed into place on a local root, uploaded as one whole object on S3. Parts rotate
after ``serve.log_part_max_lines`` lines, after ``serve.log_part_max_seconds``, when the
UTC date changes, and at shutdown. Readers skip names starting with ``.`` or ending in
``.tmp``, so they never see a half-written line.

Crash loss: lines of the part being written (and lines still queued in memory) are lost
if the process dies; published parts are complete. For S3, parts whose upload failed
stay in a local spool folder and are retried at the next rotation and at start.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

STREAMS = ("queries", "feedback")
log = logging.getLogger("citeops.serving.logs")


def part_name(now: datetime) -> str:
    """A part name unique across processes and replicas, sortable by start time."""
    host = socket.gethostname().split(".")[0][:20] or "host"
    return f"{now:%Y%m%dT%H%M%S}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"


def partition(stream: str, day: str) -> str:
    """Relative folder of one stream's date partition, e.g. ``queries/date=2026-01-31``."""
    return f"{stream}/date={day}"


@dataclass
class _OpenPart:
    """One part being written: a hidden local file, its final relative key, counters."""

    stream: str
    day: str
    name: str
    local_tmp: Path
    handle: Any
    opened_at: float
    lines: int = 0

    @property
    def key(self) -> str:
        return f"{partition(self.stream, self.day)}/{self.name}"


class PartSink:
    """Where a finished part goes: renamed into a local folder, or uploaded to S3."""

    def tmp_path(self, key: str) -> Path:  # pragma: no cover - interface
        raise NotImplementedError

    def publish(self, tmp: Path, key: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def leftovers(self) -> list[tuple[Path, str]]:
        return []


class LocalSink(PartSink):
    """Parts live beside their final name as ``.<name>.tmp`` and are renamed when complete."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def tmp_path(self, key: str) -> Path:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.tmp")

    def publish(self, tmp: Path, key: str) -> None:
        os.replace(tmp, self.root / key)


class S3Sink(PartSink):
    """Parts are spooled locally and uploaded whole (one PUT) to ``s3://bucket/prefix/key``."""

    def __init__(self, settings: Settings, uri: str, spool: Path) -> None:
        from citeops.tasks.s3 import s3_client, split_s3_uri

        self.bucket, self.prefix = split_s3_uri(uri)
        self.client = s3_client(settings)
        self.spool = spool

    def tmp_path(self, key: str) -> Path:
        path = self.spool / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.tmp")

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def publish(self, tmp: Path, key: str) -> None:
        with tmp.open("rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=body)
        tmp.unlink()

    def leftovers(self) -> list[tuple[Path, str]]:
        """Spooled parts of an earlier run (failed uploads or a crash), to publish now."""
        found = []
        for tmp in sorted(self.spool.rglob(".*.tmp")):
            drop_partial_line(tmp)
            key = str(tmp.relative_to(self.spool).with_name(tmp.name[1 : -len(".tmp")]))
            found.append((tmp, key))
        return found


def drop_partial_line(path: Path) -> None:
    """Cut a file after its last newline (a crash can leave half a line at the end)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        path.write_bytes(data[:end])


@dataclass
class LogWriterStats:
    """Counters the metrics endpoint reads."""

    lines: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STREAMS})
    parts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STREAMS})
    dropped: int = 0
    publish_errors: int = 0
    write_errors: int = 0


class LogWriter:
    """Appends log records off the request path; see the module docstring for guarantees."""

    def __init__(
        self,
        sink: PartSink,
        max_lines: int,
        max_seconds: float,
        queue_size: int = 100_000,
    ) -> None:
        self.sink = sink
        self.max_lines = max_lines
        self.max_seconds = max_seconds
        self.stats = LogWriterStats()
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(queue_size)
        self._open: dict[str, _OpenPart] = {}
        self._pending: list[tuple[Path, str]] = []
        self._thread: threading.Thread | None = None

    # ---- request side -----------------------------------------------------------------
    def write(self, stream: str, record: dict[str, Any]) -> bool:
        """Queue one record (never blocks). False if the queue is full (counted as dropped)."""
        try:
            self._queue.put_nowait((stream, record))
        except queue.Full:
            self.stats.dropped += 1
            log.error("log queue full: %s record dropped", stream)
            return False
        return True

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._pending.extend(self.sink.leftovers())
        self._thread = threading.Thread(target=self._run, name="citeops-log-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, publish every open part, stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    # ---- writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        self._retry_pending()
        tick = min(1.0, self.max_seconds / 4)
        while True:
            try:
                item = self._queue.get(timeout=tick)
            except queue.Empty:
                item = ()  # type: ignore[assignment]
            if item is None:
                break
            try:
                if item:
                    stream, record = item
                    self._append(stream, record)
                    self._drain()
                self._rotate_aged()
            except Exception:  # noqa: BLE001 - a disk or network error must not stop logging
                self.stats.write_errors += 1
                log.exception("log writer error; continuing")
        for stream in list(self._open):
            self._publish(stream)
        self._retry_pending()

    def _drain(self) -> None:
        """Write whatever else is queued right now, then flush once."""
        for _ in range(10_000):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            self._append(*item)
        for part in self._open.values():
            part.handle.flush()

    def _append(self, stream: str, record: dict[str, Any]) -> None:
        day = str(record.get("datetime", ""))[:10] or datetime.now(UTC).strftime("%Y-%m-%d")
        part = self._open.get(stream)
        if part is not None and part.day != day:
            self._publish(stream)
            part = None
        if part is None:
            part = self._open_part(stream, day)
        part.handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        part.lines += 1
        self.stats.lines[stream] += 1
        if part.lines >= self.max_lines:
            self._publish(stream)

    def _open_part(self, stream: str, day: str) -> _OpenPart:
        name = part_name(datetime.now(UTC))
        key = f"{partition(stream, day)}/{name}"
        tmp = self.sink.tmp_path(key)
        part = _OpenPart(stream, day, name, tmp, tmp.open("w", encoding="utf-8"), time.monotonic())
        self._open[stream] = part
        return part

    def _rotate_aged(self) -> None:
        now = time.monotonic()
        for stream, part in list(self._open.items()):
            if now - part.opened_at >= self.max_seconds:
                self._publish(stream)
        if self._pending:
            self._retry_pending()

    def _publish(self, stream: str) -> None:
        part = self._open.pop(stream)
        part.handle.flush()
        os.fsync(part.handle.fileno())
        part.handle.close()
        self._pending.append((part.local_tmp, part.key))
        self._retry_pending()

    def _retry_pending(self) -> None:
        still: list[tuple[Path, str]] = []
        for tmp, key in self._pending:
            if not tmp.exists():
                continue
            try:
                self.sink.publish(tmp, key)
                stream = key.split("/", 1)[0]
                self.stats.parts[stream] = self.stats.parts.get(stream, 0) + 1
            except Exception as error:  # noqa: BLE001 - network or disk; keep and retry
                self.stats.publish_errors += 1
                log.warning("could not publish log part %s (%s); will retry", key, error)
                still.append((tmp, key))
        self._pending = still


def build_log_writer(settings: Settings) -> LogWriter:
    """The writer for ``settings.log_root`` (local folder or ``s3://bucket/prefix``)."""
    root = settings.log_root or str(settings.home / "logs")
    if root.startswith("s3://"):
        sink: PartSink = S3Sink(settings, root, settings.state_dir / "log-spool")
    else:
        local = Path(root.removeprefix("file://")).expanduser()
        local.mkdir(parents=True, exist_ok=True)
        sink = LocalSink(local)
    return LogWriter(sink, settings.serve.log_part_max_lines, settings.serve.log_part_max_seconds)


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds and offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
