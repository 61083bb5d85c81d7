"""A real load balancer in front of several serving replicas: HAProxy from the system
packages, its configuration rendered from the settings.

HAProxy health-checks each replica's ``/ready`` (a replica that is loading a model, or
gone, leaves the rotation within ``stack.balancer_check_ms`` x 2) and retries a request
whose connection to a replica failed on another one, so a replica that stops takes no
request with it beyond those it was answering. Promotion and rollback still act on every
replica directly (all or nothing): the balancer only spreads the traffic.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from citeops.tasks.stack.errors import StackError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

BALANCER = "load-balancer"
CONFIG_FILE = "haproxy.cfg"


def haproxy_binary() -> str:
    """The HAProxy executable.

    Raises:
        StackError: HAProxy is not installed (with the command that installs it).
    """
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()), None
    )
    if found is None:
        raise StackError("haproxy is not installed: `apt-get install haproxy` (Debian/Ubuntu)")
    return found


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise StackError(f"{url}: a replica URL needs a host and a port")
    return parts.hostname, parts.port


def render_config(
    settings: Settings, replicas: Sequence[str], bind_host: str, bind_port: int
) -> str:
    """The HAProxy configuration: one frontend on ``bind_host:bind_port``, round robin over
    ``replicas`` (base URLs), each checked with ``GET /ready``."""
    stack = settings.stack
    check = stack.balancer_check_ms
    servers = [
        f"    server replica{i} {host}:{port} check"
        for i, (host, port) in enumerate(map(_host_port, replicas), start=1)
    ]
    timeout_ms = int(settings.promote.request_timeout_seconds * 1000)
    return "\n".join(
        [
            "# rendered by citeops from the settings (stack.*, serve.*): do not edit",
            "global",
            "    maxconn 4096",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 60s",
            f"    timeout server {timeout_ms}ms",
            # a request whose replica refused the connection, or closed it without an
            # answer, goes to another replica instead of failing
            "    retries 3",
            "    option redispatch 1",
            "    retry-on conn-failure empty-response 503",
            "frontend serving",
            f"    bind {bind_host}:{bind_port}",
            "    default_backend replicas",
            "backend replicas",
            "    balance roundrobin",
            "    option httpchk GET /ready",
            "    http-check expect status 200",
            # a replica that is slow to answer its check (a busy CPU) is not taken out:
            # only a refused or failing check is
            "    timeout check 5s",
            f"    default-server inter {check}ms fastinter {check}ms downinter {check}ms "
            "fall 2 rise 2",
            *servers,
            "",
        ]
    )


def write_config(settings: Settings, replicas: Sequence[str], host: str, port: int) -> Path:
    """Render the configuration into the state folder and check it with ``haproxy -c``.

    Raises:
        StackError: HAProxy is missing or refuses the configuration.
    """
    import subprocess

    path = settings.state_dir / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(settings, replicas, host, port))
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-q", "-f", str(path)], capture_output=True, text=True
    )
    if checked.returncode != 0:
        why = (checked.stderr or checked.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"{path}: haproxy refuses the configuration: {why[0]}")
    return path


def balancer_argv(config: Path) -> list[str]:
    """HAProxy in the foreground (``-db``) on ``config``, so `citeops down` stops it."""
    return [haproxy_binary(), "-db", "-f", str(config)]
