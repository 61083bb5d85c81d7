"""Server subprocesses that a fault test kills and starts again on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.conftest import free_port, wait_for_http


@dataclass
class RestartableServer:
    """A server process on a fixed local port: :meth:`launch` starts it in a session of
    its own and waits for ``ready_path`` to answer; :meth:`kill` SIGKILLs its whole
    process group (workers too)."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(
        self,
        argv: Sequence[str],
        ready_path: str,
        timeout: float,
        env: Mapping[str, str] | None = None,
        output: IO[bytes] | int = subprocess.DEVNULL,
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        wait_for_http(self.url + ready_path, timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def program(name: str, python: str) -> str:
    """The path of a console script: on PATH, else beside ``python``."""
    return shutil.which(name) or str(Path(python).with_name(name))
