"""Peak memory of a benchmark's own processes.

``getrusage``'s ``ru_maxrss`` is not enough on Linux: a process started with
``subprocess`` inherits, across ``fork`` + ``exec``, the peak of its parent at the moment
it was started (a benchmark child started by a parent that generated a gigabyte of
workload would report that gigabyte). ``VmHWM`` in ``/proc/<pid>/status`` is the peak of
the process's own address space since its ``exec``; it is used where the system has it.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

SAMPLE_SECONDS = 0.1


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak RSS of process ``pid`` since its ``exec`` in MB (``VmHWM``); None where
    ``/proc`` does not have it (not Linux, process gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def own_peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM``, else ``ru_maxrss`` (which may include
    the parent's at start)."""
    peak = vm_hwm_mb()
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ChildPeaks:
    """Samples the ``VmHWM`` of this process's children (started from the main thread)
    every :data:`SAMPLE_SECONDS` while in the ``with`` block; :attr:`peak_mb` is the
    largest seen (the high-water mark only grows, so sampling misses at most what a child
    reached in its last tenth of a second). None where ``/proc`` has no children list."""

    def __init__(self) -> None:
        pid = os.getpid()
        self._children = Path(f"/proc/{pid}/task/{pid}/children")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-peaks", daemon=True)
        self.peaks: dict[int, float] = {}

    @property
    def peak_mb(self) -> float | None:
        return max(self.peaks.values()) if self.peaks else None

    def _sample(self) -> None:
        try:
            pids = [int(p) for p in self._children.read_text().split()]
        except OSError:
            return
        for pid in pids:
            peak = vm_hwm_mb(pid)
            if peak is not None:
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
