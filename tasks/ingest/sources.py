"""Log objects under a log root (a local folder or ``s3://bucket/prefix``): listing, identity
and streaming their lines.

Published parts only: a name starting with ``.`` or ending in ``.tmp`` is a part still being
written and is skipped. Any ``*.jsonl`` object is read; objects under a ``queries/`` folder
are query logs, every other one is feedback (the serving endpoint's ``feedback/`` parts and
AI4citations' own feedback files alike). A local ``*.jsonl`` entry that cannot be a log
part (a dangling link, a link loop, a folder, a FIFO) is skipped and reported, never read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError
from citeops.tasks.s3 import s3_client, split_s3_uri

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

READ_BLOCK = 1 << 20


class SourceError(CiteopsError):
    """The log root cannot be listed or an object cannot be read."""


@dataclass(frozen=True, slots=True)
class LogObject:
    """One published log object: where it is, what kind of log, and its identity."""

    uri: str  # absolute path or s3://bucket/key: the manifest key
    kind: str  # "feedback" | "queries"
    size: int
    etag: str | None = None  # S3 ETag; None for local files (hashed while read)
    mtime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """An entry a run did not ingest, and why (reported, never silently dropped)."""

    uri: str
    reason: str


@dataclass
class Listing:
    """What :func:`list_objects` found: the objects to consider and the entries skipped."""

    objects: list[LogObject]
    skipped: list[SkippedEntry]


def is_published_part(name: str) -> bool:
    """True for a finished ``*.jsonl`` part (not hidden, not a ``.tmp`` in progress)."""
    return name.endswith(".jsonl") and not name.startswith(".") and not name.endswith(".tmp")


def kind_of(relative_key: str) -> str:
    """``queries`` for objects in a ``queries/`` folder, else ``feedback``."""
    parts = relative_key.replace("\\", "/").split("/")
    return "queries" if "queries" in parts[:-1] else "feedback"


def resolve_root(settings: Settings, source: str | None) -> str:
    """The root to ingest: ``source`` if given, else ``settings.log_root``."""
    root = source or settings.log_root or str(settings.home / "logs")
    if root.startswith("file://"):
        root = root[len("file://") :]
    if not root.startswith("s3://"):
        root = str(Path(root).expanduser().resolve())
    return root


def list_objects(settings: Settings, root: str, missing_ok: bool = False) -> Listing:
    """Every published log object under ``root``, sorted by URI (so by date partition), and
    the local entries skipped because they cannot be read as a file (see
    :func:`_local_object`). ``missing_ok``: a local root that does not exist yet holds no
    objects (nothing has been logged yet) instead of being an error.

    Raises:
        SourceError: the folder does not exist or the bucket cannot be listed.
    """
    if root.startswith("s3://"):
        return Listing(_list_s3(settings, root), [])
    if missing_ok and not Path(root).exists():
        return Listing([], [])
    return _list_local(Path(root))


def _local_object(path: Path, relative: str) -> LogObject | SkippedEntry:
    """The log object at ``path`` (links followed), or why it is skipped: a dangling link,
    a link loop or anything else ``stat`` refuses, or an entry that is not a regular file
    (a FIFO would block the reader, a folder named ``*.jsonl`` cannot be read)."""
    try:
        info = path.stat()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if path.is_symlink() and isinstance(error, FileNotFoundError):
            reason = "dangling symbolic link"
        return SkippedEntry(str(path), reason)
    if not stat.S_ISREG(info.st_mode):
        return SkippedEntry(str(path), "not a regular file")
    return LogObject(str(path), kind_of(relative), info.st_size, None, info.st_mtime_ns)


def _list_local(root: Path) -> Listing:
    if root.is_file():
        found = _local_object(root, root.name)
        if isinstance(found, SkippedEntry):
            raise SourceError(f"{root}: cannot read ({found.reason})")
        return Listing([found], [])
    if not root.is_dir():
        raise SourceError(f"{root}: no such folder; pass --source or set CITEOPS_LOG_ROOT")
    listing = Listing([], [])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not is_published_part(name):
                continue
            path = Path(dirpath) / name
            found = _local_object(path, str(path.relative_to(root)))
            if isinstance(found, SkippedEntry):
                listing.skipped.append(found)
            else:
                listing.objects.append(found)
    listing.objects.sort(key=lambda o: o.uri)
    listing.skipped.sort(key=lambda e: e.uri)
    return listing


def _list_s3(settings: Settings, root: str) -> list[LogObject]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_uri(root)
    client = s3_client(settings)
    found: list[LogObject] = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for item in page.get("Contents", []):
                key: str = item["Key"]
                name = key.rsplit("/", 1)[-1]
                if not is_published_part(name):
                    continue
                relative = key[len(prefix) + 1 :] if prefix else key
                if any(part.startswith(".") for part in relative.split("/")[:-1]):
                    continue
                found.append(
                    LogObject(
                        f"s3://{bucket}/{key}",
                        kind_of(relative),
                        int(item["Size"]),
                        str(item["ETag"]).strip('"'),
                    )
                )
    except (BotoCoreError, ClientError) as error:
        raise SourceError(f"{root}: cannot list objects ({error})") from None
    return sorted(found, key=lambda o: o.uri)


def open_object(settings: Settings, obj: LogObject) -> IO[bytes]:
    """A binary stream of the object's bytes (a local file or the S3 response body)."""
    if obj.uri.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3_uri(obj.uri)
        try:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if obj.etag:
                kwargs["IfMatch"] = f'"{obj.etag}"'
            return s3_client(settings).get_object(**kwargs)["Body"]
        except (BotoCoreError, ClientError) as error:
            raise SourceError(f"{obj.uri}: cannot read ({error})") from None
    try:
        return open(obj.uri, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as error:
        raise SourceError(f"{obj.uri}: cannot read ({error.strerror})") from None


class LineReader:
    """Streams an object's lines as ``(line_no, bytes)`` without their ``\\n``, in blocks,
    and hashes the bytes as they pass (the content identity of local files).

    A line is whatever lies between newlines; a last line without a newline is a line; the
    empty string after a final newline is not. A line longer than ``max_line_bytes`` is
    yielded cut to that length with ``too_long`` set, and the rest of it is skipped.
    """

    def __init__(self, stream: IO[bytes], max_line_bytes: int) -> None:
        self.stream = stream
        self.max_line_bytes = max_line_bytes
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def __iter__(self) -> Iterator[tuple[int, bytes, bool]]:
        number = 0
        pending = bytearray()
        overflow = False  # inside a line already cut to max_line_bytes
        limit = self.max_line_bytes
        while True:
            block = self.stream.read(READ_BLOCK)
            if not block:
                break
            self.sha256.update(block)
            self.bytes_read += len(block)
            start = 0
            while True:
                end = block.find(b"\n", start)
                if end < 0:
                    if not overflow:
                        pending += block[start:]
                        if len(pending) > limit:
                            overflow = True
                            del pending[limit:]
                    break
                if overflow:
                    number += 1
                    yield number, bytes(pending), True
                    overflow = False
                elif pending:
                    pending += block[start:end]
                    number += 1
                    cut = len(pending) > limit
                    yield number, bytes(pending[:limit]), cut
                else:
                    number += 1
                    line = block[start:end]
                    if len(line) > limit:
                        yield number, line[:limit], True
                    else:
                        yield number, line, False
                pending.clear()
                start = end + 1
        if pending or overflow:
            number += 1
            yield number, bytes(pending), overflow
