"""Start, find and stop the stack's background processes.

Each process runs in its own session (process group), writes stdout and stderr to a log
file, and is recorded in a PID file (JSON) holding its PID *and* its start time, so that a
PID reused by an unrelated program after a reboot is never mistaken for ours.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

START_TIME_TOLERANCE_S = 0.05
SIGINT_GRACE_S = 5.0  # how long a SIGINT stop_signal is given before SIGTERM to the group
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for the child when its parent dies


@dataclass(frozen=True)
class ProcessRecord:
    """What `citeops up` remembers about a process it started."""

    name: str
    pid: int
    create_time: float  # psutil's start time of the process, seconds since the epoch
    log: str
    url: str | None = None
    port: int | None = None
    started_at: str = ""
    stop_signal: str = "SIGTERM"  # SIGINT for programs that shut down cleanly on Ctrl-C


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def record_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid.json"


def log_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.log"


def write_record(state_dir: Path, record: ProcessRecord) -> Path:
    """Write the PID file atomically (a reader never sees half a file)."""
    path = record_path(state_dir, record.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(path)
    return path


def read_record(state_dir: Path, name: str) -> ProcessRecord | None:
    """The recorded process, or None when there is no (readable) PID file."""
    path = record_path(state_dir, name)
    try:
        return ProcessRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def remove_record(state_dir: Path, name: str) -> None:
    record_path(state_dir, name).unlink(missing_ok=True)


def is_alive(record: ProcessRecord) -> bool:
    """True when the recorded PID runs and is the very process that was recorded."""
    try:
        proc = psutil.Process(record.pid)
        alive = proc.status() != psutil.STATUS_ZOMBIE
        return alive and abs(proc.create_time() - record.create_time) < START_TIME_TOLERANCE_S
    except psutil.Error:
        return False


def start_process(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    state_dir: Path,
    url: str | None = None,
    port: int | None = None,
    stop_signal: str = "SIGTERM",
) -> ProcessRecord:
    """Start ``argv`` in the background in a new session, log to ``<state_dir>/<name>.log``
    (appended, one header line per start) and write its PID file. ``stop_signal`` is what
    :func:`stop_process` sends first."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = log_path(state_dir, name)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with log.open("ab") as out:
        out.write(f"\n=== {started_at} citeops up: starting {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    create_time = psutil.Process(proc.pid).create_time()
    record = ProcessRecord(
        name, proc.pid, create_time, str(log), url, port, started_at, stop_signal
    )
    write_record(state_dir, record)
    return record


def stop_process(record: ProcessRecord, timeout: float) -> bool:
    """Stop the recorded process and everything in its process group.

    SIGTERM goes to the whole group; a SIGINT ``stop_signal`` goes to the leader alone
    (it stops its own children, like Ctrl-C), followed by SIGTERM to the group after
    ``SIGINT_GRACE_S`` (at most half the ``timeout``). Whatever is left after ``timeout``
    seconds gets SIGKILL. Returns False when the process was not running."""
    if not is_alive(record):
        return False
    group = _own_group(record.pid)
    if record.stop_signal == "SIGINT":
        _signal(record.pid, False, signal.SIGINT)
        grace = min(timeout / 2, SIGINT_GRACE_S)
        if _wait_gone(record, group, grace):
            return True
        timeout -= grace
    _signal(record.pid, group, signal.SIGTERM)
    if _wait_gone(record, group, timeout):
        return True
    _signal(record.pid, group, signal.SIGKILL)
    _wait_gone(record, group, 5.0)
    return True


def _own_group(pid: int) -> bool:
    """True when ``pid`` leads its own process group (it was started in a new session)."""
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _signal(pid: int, group: bool, sig: signal.Signals) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def _wait_gone(record: ProcessRecord, group: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader_gone = not is_alive(record)
        if leader_gone and (not group or not _group_members(record.pid)):
            return True
        time.sleep(0.2)
    return False


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str | None:
    """``"pid 123 (name)"`` of the process listening on ``port``, when it can be seen."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def tail(path: Path | str, lines: int = 8) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def death_signal_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the process starting it dies,
    even by SIGKILL (Linux ``prctl(PR_SET_PDEATHSIG)``); ``None`` elsewhere.

    libc is loaded here, in the parent: the hook runs between fork and exec, where loading
    a library is unsafe. A parent already gone by then is caught by its pid changing."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def prefect_server_dies_with_us() -> None:
    """Make the temporary Prefect API server that Prefect starts for a flow run without
    ``PREFECT_API_URL`` (a ``uvicorn`` child) die with this process: Prefect stops it at
    exit, but a process killed with SIGKILL leaves it running for good otherwise.

    Prefect starts it with ``subprocess.Popen`` and offers no hook, so its module sees a
    ``subprocess`` whose ``Popen`` adds :func:`death_signal_hook`. Nothing is done with
    ``PREFECT_API_URL`` set (no temporary server) or off Linux; calling it twice is harmless.
    """
    hook = death_signal_hook()
    if hook is None or os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.api import server

    if isinstance(server.subprocess, _ChildrenDieWithParent):
        return
    server.subprocess = _ChildrenDieWithParent(hook)


class _ChildrenDieWithParent(types.ModuleType):
    """:mod:`subprocess` as one module sees it, with children started by ``Popen`` dying
    with their parent."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__("subprocess")
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802
        kwargs.setdefault("preexec_fn", self._hook)
        return subprocess.Popen(*args, **kwargs)
