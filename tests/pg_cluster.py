"""A PostgreSQL cluster of a test's own, which the test may stop and restart at will.

Fault tests restart PostgreSQL in the middle of a command; they must never touch the
machine's shared server (127.0.0.1:5432). :func:`private_cluster` runs ``initdb`` as the
``postgres`` user (the server refuses to run as root) into a fresh temporary folder,
starts it with ``pg_ctl`` on a free port (socket in the same folder) and removes it all
at the end. It yields a :class:`PgCluster` whose :meth:`~PgCluster.restart` is the fault.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

SERVER_USER = "postgres"


def postgres_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH), the newest
    installed major version; ``None`` when PostgreSQL's server is not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_major)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _major(pg_ctl: Path) -> int:
    name = pg_ctl.parent.parent.name
    return int(name) if name.isdigit() else 0


def cluster_missing() -> str | None:
    """Why a private cluster cannot be made here, or ``None``."""
    if postgres_bin_dir() is None:
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as its own user"
    try:
        import pwd

        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return f"no {SERVER_USER!r} user to run PostgreSQL as"
    return None


@dataclass
class PgCluster:
    """A running private cluster: ``root`` holds its data, socket and log."""

    root: Path
    port: int
    bin_dir: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of ``database`` as the superuser, over TCP."""
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def libpq_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "50"]
        command += ["-l", str(self.logfile), "-o", options, *args]
        _as_server_user(command, timeout)

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: every session is ended, open transactions roll
        back) and start it again on the same port; returns once it accepts connections."""
        self._pg_ctl("restart", "-m", mode)

    def create_database(self) -> str:
        """A new database with a unique name; returns its SQLAlchemy URL."""
        import psycopg

        name = f"citeops_fault_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.libpq_url(), autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(command: list[str], timeout: float) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """A fresh cluster on a free port (trust authentication, ``fsync`` off: a test's data
    need not survive a power cut), stopped and removed on exit."""
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None, cluster_missing()
    # not under pytest's tmp_path: its folders are private to root, the server's user
    # must be able to reach its data folder
    root = Path(tempfile.mkdtemp(prefix="citeops-pg-"))
    cluster = PgCluster(root=root, port=free_port(), bin_dir=bin_dir)
    try:
        if os.geteuid() == 0:
            shutil.chown(root, SERVER_USER, SERVER_USER)
        initdb = [str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", SERVER_USER]
        _as_server_user([*initdb, "-A", "trust", "--no-sync", "-E", "UTF8"], timeout=120)
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            try:
                cluster.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(root, ignore_errors=True)
