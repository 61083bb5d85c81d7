"""Reading, parsing and validating log objects in a child process while the parent
stores the previous chunks: the two halves of an ingest overlap on two cores.

The child is a plain ``python`` subprocess talking pickles over a pipe (no
``multiprocessing``: nothing re-imports the caller's main module, nothing is forked with
open database handles). The parent keeps the database transaction (one per object), so
crash safety is what it is in one process. The pipe's buffer bounds the memory: the child
blocks while the parent is busy. The child ends when the parent goes away (its next
write fails, even after a ``kill -9`` of the parent); the parent raises if the child dies.

The child sends every object in the order given; the parent may stop taking an object's
chunks early (another run committed it first) and simply asks for the next object: the
rest of the skipped object is read past, so parent and child never fall out of step.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError
from citeops.tasks.ingest.validate import BatchValidator

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.ingest.read import PreparedChunk
    from citeops.tasks.ingest.sources import LogObject

DROP_FROM_ROWS = ("raw", "ts", "prob_sum")  # only the validation needed them
CHILD = "from citeops.tasks.ingest.prefetch import child_main; child_main()"


class PrefetchError(CiteopsError):
    """The reading process failed or died; the message says why."""


def produce(
    settings: Settings,
    objects: Sequence[LogObject],
    leaked_claims: frozenset[str],
    out: IO[bytes],
) -> None:
    """Write ``("chunk", uri, PreparedChunk)`` for every chunk of every object, then
    ``("end", uri, (size, etag))`` per object; ``("error", None, error)`` on failure."""
    from citeops.tasks.ingest.read import ObjectReader, bulk_gc, prepare_chunk
    from citeops.tasks.store.schema import utc_now

    def send(message: tuple[str, str | None, Any]) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        with bulk_gc():
            validator = BatchValidator(settings)
            for obj in objects:
                reader = ObjectReader(settings, obj)
                now = utc_now()
                for parsed in reader.chunks():
                    chunk = prepare_chunk(validator, obj.kind, parsed, now, leaked_claims)
                    for row in chunk.rows:
                        for key in DROP_FROM_ROWS:
                            row.pop(key, None)
                    send(("chunk", obj.uri, chunk))
                send(("end", obj.uri, reader.identity()))
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - sent to the parent, which raises it
        payload: Any = error if isinstance(error, CiteopsError) else repr(error)
        try:
            send(("error", None, payload))
        except pickle.PicklingError:
            send(("error", None, repr(error)))


def child_main() -> None:
    """Entry point of the child: settings and objects come pickled on stdin."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the pipe
    import great_expectations  # noqa: F401 - seconds of import while the parent plans

    settings, objects, leaked_claims = pickle.load(sys.stdin.buffer)
    try:
        produce(settings, objects, leaked_claims, out)
        out.close()
    except BrokenPipeError:  # the parent is gone
        os._exit(0)


class Prefetcher:
    """The child over ``objects``; the parent takes each object's prepared chunks in order
    with :meth:`chunks`, then its bytes' identity with :meth:`identity`."""

    def __init__(self, settings: Settings, objects: Sequence[LogObject]) -> None:
        self._settings = settings
        self._objects = list(objects)
        self._position = {obj.uri: i for i, obj in enumerate(self._objects)}
        self._next = 0  # position of the first object whose "end" has not been received
        self._identity: dict[str, tuple[int, str]] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prefetcher:
        """Start the child (it imports GX meanwhile); then :meth:`feed` it."""
        self._proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return self

    def feed(self, leaked_claims: frozenset[str]) -> None:
        """Send the settings, the objects and the benchmark claims: the child starts."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            pickle.dump((self._settings, self._objects, leaked_claims), self._proc.stdin)
            self._proc.stdin.close()
        except BrokenPipeError:
            code = self._proc.wait(timeout=30)
            raise PrefetchError(f"the ingest reader process ended early (exit {code})") from None

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def _get(self) -> tuple[str, str | None, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            return pickle.load(self._proc.stdout)
        except EOFError:
            code = self._proc.wait(timeout=30)
            raise PrefetchError(f"the ingest reader process ended early (exit {code})") from None

    def chunks(self, obj: LogObject) -> Iterator[PreparedChunk]:
        """The prepared chunks of ``obj``. Objects are taken in the order given; what is
        left of earlier objects whose chunks were not all taken is read past and dropped.

        Raises:
            PrefetchError: the child failed, died, or sent an object out of order.
            CiteopsError: the child could not read an object (e.g. ``SourceError``).
        """
        target = self._position[obj.uri]
        if target < self._next:
            raise PrefetchError(f"{obj.uri}: its chunks were already taken")
        while True:
            kind, uri, payload = self._get()
            if kind == "error":
                if isinstance(payload, CiteopsError):
                    raise payload
                raise PrefetchError(f"the ingest reader failed: {payload}")
            position = self._position.get(uri or "", -1)
            if not self._next <= position <= target:
                raise PrefetchError(f"the ingest reader sent {uri}, expected {obj.uri}")
            if kind == "end":
                self._identity[self._objects[position].uri] = payload
                self._next = position + 1
                if position == target:
                    return
            elif position == target:
                yield payload

    def identity(self, obj: LogObject) -> tuple[int, str]:
        """``(size, etag)`` of the bytes of ``obj`` (after all its chunks were taken)."""
        return self._identity[obj.uri]
