"""The serving replicas a promotion acts on: ``promote.endpoints`` as configured, with
``dns://<name>:<port>`` entries expanded to every address the name resolves to (a
Kubernetes headless Service lists its ready replicas so)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

DNS_SCHEME = "dns://"
# the base URLs of the replicas `citeops up --replicas N` runs, in the state folder
REPLICAS_FILE = "serving-replicas.json"
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class EndpointDiscoveryFailed(CiteopsError):
    """A ``dns://`` endpoint did not resolve to any replica."""


def _split(entry: str) -> tuple[str, int]:
    name, sep, port = entry[len(DNS_SCHEME) :].rstrip("/").rpartition(":")
    if not sep or not name or not port.isdigit():
        raise EndpointDiscoveryFailed(f"{entry}: expected dns://<name>:<port>")
    return name, int(port)


def discover(entry: str, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """``dns://name:port`` -> ``http://<address>:port`` for each address, sorted, once each."""
    name, port = _split(entry)
    try:
        answers = resolver(name, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise EndpointDiscoveryFailed(f"{entry}: {error}") from None
    hosts = sorted({str(answer[4][0]) for answer in answers})
    if not hosts:
        raise EndpointDiscoveryFailed(f"{entry}: no replica address")
    return [f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}" for h in hosts]


def local_endpoints(settings: Settings) -> tuple[str, ...]:
    """Without ``promote.endpoints``: the replicas `citeops up --replicas N` recorded, else
    the one local endpoint."""
    import json

    recorded = settings.state_dir / REPLICAS_FILE
    if recorded.is_file():
        return tuple(json.loads(recorded.read_text()))
    return settings.serving_endpoints


def serving_endpoints(settings: Settings, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """Base URLs of every serving replica (``promote.endpoints``, else
    :func:`local_endpoints`), ``dns://`` entries resolved now (replicas come and go between
    promotions).

    Raises:
        EndpointDiscoveryFailed: a ``dns://`` entry is malformed or resolves to nothing.
    """
    endpoints: list[str] = []
    for entry in settings.promote.endpoints or local_endpoints(settings):
        found = discover(entry, resolver) if entry.startswith(DNS_SCHEME) else [entry]
        endpoints.extend(url for url in found if url not in endpoints)
    return endpoints
