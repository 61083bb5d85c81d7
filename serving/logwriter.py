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

Crash recovery: a writer holds an exclusive ``flock`` on each part it writes. At start,
hidden parts that no live writer holds were left by a writer that died (kill -9, power
loss): their complete lines are published under the part's visible name, and a torn last
line is moved to ``<part>.jsonl.torn`` beside it (never read by ingestion). Lines still
queued in memory when the process died are lost; :meth:`LogWriter.write_durable` waits
until a line is flushed to the file, so a process crash cannot lose it. For S3, finished
parts wait in a local spool folder and are uploaded by a thread of their own, so a slow,
hung or unreachable S3 API never holds the writer (nor the /feedback acknowledgements that
wait for it); a failed upload stays in the spool and is retried at the next rotation,
after ``serve.log_part_max_seconds``, and at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.logcontract import DATETIME, STREAMS
from citeops.tasks.s3 import s3_client, split_s3_uri

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

TORN_SUFFIX = ".torn"
log = logging.getLogger("citeops.serving.logs")


class LogWriteFailed(Exception):
    """A record could not be written durably (queue full, writer stopped, disk error)."""


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
    waiting: list[Future[None]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{partition(self.stream, self.day)}/{self.name}"


class PartSink:
    """Where a finished part goes: renamed into a local folder, or uploaded to S3."""

    background = False
    """Publish on an uploader thread (a network sink) rather than the writer thread."""

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

    def leftovers(self) -> list[tuple[Path, str]]:
        """Hidden parts a dead writer left under the stream folders, to publish now."""
        found: list[tuple[Path, str]] = []
        for stream in STREAMS:
            found.extend(recover_parts(self.root, stream))
        return found


class S3Sink(PartSink):
    """Parts are spooled locally and uploaded whole (one PUT) to ``s3://bucket/prefix/key``."""

    background = True

    def __init__(self, settings: Settings, uri: str, spool: Path) -> None:

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
        if not self.spool.is_dir():
            return []
        found: list[tuple[Path, str]] = []
        for stream in STREAMS:
            found.extend(recover_parts(self.spool, stream))
        return found


def drop_partial_line(path: Path) -> bytes:
    """Cut a file after its last newline (a crash can leave half a line at the end);
    return the bytes cut off (empty when the file ends with a newline)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        path.write_bytes(data[:end])
    return data[end:]


def _lock(handle: Any, wait: bool) -> bool:
    """Take the exclusive lock on an open part (released when the handle closes, or when
    the process dies); without ``wait``, False if another handle holds it."""
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def recover_parts(root: Path, stream: str) -> list[tuple[Path, str]]:
    """``(hidden part, key to publish it under)`` for every part of ``stream`` under
    ``root`` that was left by a writer that died.

    A part whose lock a live writer holds (in any process) is left alone. A torn last
    line is moved to ``<part>.jsonl.torn`` beside the part's visible name; a part with no
    complete line is removed.
    """
    folder = root / stream
    if not folder.is_dir():
        return []
    found: list[tuple[Path, str]] = []
    for tmp in sorted(folder.rglob(".*.jsonl.tmp")):
        with tmp.open("rb") as handle:
            if not _lock(handle, wait=False):
                continue  # a live writer's open part
            key = str(tmp.relative_to(root).with_name(tmp.name[1 : -len(".tmp")]))
            torn = drop_partial_line(tmp)
            if torn:
                torn_path = root / (key + TORN_SUFFIX)
                torn_path.write_bytes(torn)
                log.warning("torn last line of %s (%d bytes) kept in %s", key, len(torn), torn_path)
            if tmp.stat().st_size == 0:
                tmp.unlink()
                continue
        log.info("recovering log part %s left by a writer that stopped", key)
        found.append((tmp, key))
    return found


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
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_size)
        self._open: dict[str, _OpenPart] = {}
        self._pending: list[tuple[Path, str]] = []  # owned by the thread that publishes
        self._thread: threading.Thread | None = None
        self._uploads: queue.Queue[tuple[Path, str] | None] = queue.Queue()
        self._uploader: threading.Thread | None = None

    # ---- request side -----------------------------------------------------------------
    def write(self, stream: str, record: dict[str, Any]) -> bool:
        """Queue one record (never blocks). False if the queue is full (counted as dropped)."""
        return self._put((stream, record, None))

    async def write_durable(self, stream: str, record: dict[str, Any], timeout: float) -> None:
        """Queue one record and wait until it is flushed to its part file (then a process
        crash cannot lose it: the part is recovered at the next start).

        Raises:
            LogWriteFailed: the queue is full, the writer is not running, the line could
                not be written, or it was not written within ``timeout`` seconds.
        """
        done: Future[None] = Future()
        if self._thread is None or not self._put((stream, record, done)):
            raise LogWriteFailed("the log writer is not accepting lines")
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), timeout)
        except TimeoutError:
            raise LogWriteFailed(f"the line was not written within {timeout:.0f} s") from None

    def _put(self, item: _Item) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            log.error("log queue full: %s record dropped", item[0])
            return False
        return True

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._pending.extend(self.sink.leftovers())
        if self.sink.background:
            self._uploader = threading.Thread(
                target=self._upload_loop, name="citeops-log-upload", daemon=True
            )
            self._uploader.start()
        self._thread = threading.Thread(target=self._run, name="citeops-log-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, publish every open part, stop the threads (waiting at
        most ``timeout`` seconds in all: parts not uploaded by then stay in the spool and are
        uploaded at the next start)."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._uploader is not None:
            self._uploads.put(None)
            self._uploader.join(max(0.0, deadline - time.monotonic()))
            if self._uploader.is_alive():
                log.warning("log uploads unfinished at shutdown: uploaded at the next start")
            self._uploader = None

    # ---- writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        if self._uploader is None:
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
                    self._append(*item)
                    self._drain()
                self._rotate_aged()
            except Exception as error:  # noqa: BLE001 - a disk or network error must not stop logging
                self.stats.write_errors += 1
                log.exception("log writer error; continuing")
                self._fail_waiting(error)
        for stream in list(self._open):
            self._publish(stream)
        if self._uploader is None:
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
            _settle(part.waiting)

    def _fail_waiting(self, error: Exception) -> None:
        for part in self._open.values():
            _settle(part.waiting, LogWriteFailed(f"{type(error).__name__}: {error}"))

    def _append(self, stream: str, record: dict[str, Any], done: Future[None] | None) -> None:
        day = str(record.get(DATETIME, ""))[:10] or datetime.now(UTC).strftime("%Y-%m-%d")
        try:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            line.encode("utf-8")
        except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
            self.stats.write_errors += 1
            log.error("%s record not writable, dropped: %s", stream, error)
            if done is not None:
                _settle([done], LogWriteFailed(f"record not writable: {error}"))
            return
        part = self._open.get(stream)
        if part is not None and part.day != day:
            self._publish(stream)
            part = None
        if part is None:
            part = self._open_part(stream, day)
        part.handle.write(line)
        if done is not None:
            part.waiting.append(done)
        part.lines += 1
        self.stats.lines[stream] += 1
        if part.lines >= self.max_lines:
            self._publish(stream)

    def _open_part(self, stream: str, day: str) -> _OpenPart:
        """A new hidden part, locked so that a writer starting elsewhere leaves it alone."""
        while True:
            name = part_name(datetime.now(UTC))
            key = f"{partition(stream, day)}/{name}"
            tmp = self.sink.tmp_path(key)
            handle = tmp.open("x", encoding="utf-8")
            _lock(handle, wait=True)  # waits only while a starting writer inspects it
            if tmp.exists() and os.path.samestat(os.fstat(handle.fileno()), tmp.stat()):
                break
            handle.close()  # removed as empty by a starting writer before we locked it
        part = _OpenPart(stream, day, name, tmp, handle, time.monotonic())
        self._open[stream] = part
        return part

    def _rotate_aged(self) -> None:
        now = time.monotonic()
        for stream, part in list(self._open.items()):
            if now - part.opened_at >= self.max_seconds:
                self._publish(stream)
        if self._pending and self._uploader is None:
            self._retry_pending()

    def _publish(self, stream: str) -> None:
        part = self._open.pop(stream)
        part.handle.flush()
        os.fsync(part.handle.fileno())
        _settle(part.waiting)
        if self._uploader is not None:
            part.handle.close()
            self._uploads.put((part.local_tmp, part.key))
            return
        self._pending.append((part.local_tmp, part.key))
        self._retry_pending()  # the lock is held until the part is renamed (local root)
        part.handle.close()

    # ---- uploader thread (network sinks) ------------------------------------------------
    def _upload_loop(self) -> None:
        """Upload the spool's parts at start, then finished parts as they come; after a
        failure, try again at the next part or after ``max_seconds``; at shutdown, one last
        round."""
        stopping = False
        while not stopping:
            self._retry_pending()
            stopping = self._collect_uploads(self.max_seconds)
        self._retry_pending()

    def _collect_uploads(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a finished part, then take every part queued; True
        once the writer has said it stopped."""
        try:
            item = self._uploads.get(timeout=timeout)
        except queue.Empty:
            return False
        while item is not None:
            self._pending.append(item)
            try:
                item = self._uploads.get_nowait()
            except queue.Empty:
                return False
        return True

    def _retry_pending(self) -> None:
        """Publish the pending parts in order; the first failure ends the round (the sink is
        likely down: the rest wait for the next round rather than each retrying now), and the
        part that failed goes last, so one bad part cannot hold the others."""
        for index, (tmp, key) in enumerate(self._pending):
            if not tmp.exists():
                continue
            try:
                self.sink.publish(tmp, key)
                stream = key.split("/", 1)[0]
                self.stats.parts[stream] = self.stats.parts.get(stream, 0) + 1
            except Exception as error:  # noqa: BLE001 - network or disk; keep and retry
                self.stats.publish_errors += 1
                log.warning("could not publish log part %s (%s); will retry", key, error)
                self._pending = self._pending[index + 1 :] + [(tmp, key)]
                return
        self._pending = []


_Item = tuple[str, dict[str, Any], Future[None] | None]


def _settle(waiting: list[Future[None]], error: Exception | None = None) -> None:
    """Resolve (or fail) the futures of written lines and empty the list; a future its
    caller stopped waiting for (cancelled) is skipped."""
    for done in waiting:
        try:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
        except InvalidStateError:
            pass
    waiting.clear()


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
