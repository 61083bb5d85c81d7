"""Blue-green promotion through the serving endpoints' admin API, a bake window, aliases.

:func:`promote_blue_green` deploys a model URI to every endpoint in turn
(``/admin/deploy``: load into the idle slot, smoke checks, switch). If one refuses, the
endpoints already switched are rolled back and nothing else changes. Then, for
``promote.bake_seconds``, each endpoint's own ``/metrics`` and ``/ready`` are read: the
error rate and p95 latency of ``/predict*`` during the window must stay within the
thresholds, else every endpoint is rolled back (:class:`BakeFailed`). Only after a clean
bake do the registry aliases move, in one step (:func:`move_aliases`); when the registry
refuses that step, :func:`move_aliases_or_roll_back` rolls every endpoint back, so that a
promotion ends fully promoted or fully rolled back, never with an unbaked model live.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError
from citeops.tasks.inference.aliases import CHALLENGER, CHAMPION, PREVIOUS, model_uri_for
from citeops.tasks.registry.register import delete_alias, get_version_by_alias, set_alias
from citeops.tasks.release.endpoints import serving_endpoints
from citeops.tasks.tracking import tracking_outage

if TYPE_CHECKING:
    import httpx

    from citeops.configs.settings import Settings

log = logging.getLogger(__name__)

PREDICT_ROUTES = ("/predict", "/predict/batch")
REQUESTS = "citeops_http_requests_total"
DURATION = "citeops_http_request_duration_seconds"


class PromotionFailed(CiteopsError):
    """An endpoint refused the candidate; the endpoints already switched were rolled back
    (``rolled_back`` names them; empty when nothing had switched)."""

    def __init__(self, message: str, rolled_back: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


class AliasMoveFailed(CiteopsError):
    """The registry aliases could not move after a clean bake; every endpoint was rolled
    back to the model it served before and ``champion`` left (or put back) where it was."""


class BakeFailed(CiteopsError):
    """The new live model broke a bake threshold; every endpoint was rolled back."""

    def __init__(self, message: str, bake: list[BakeFigures]) -> None:
        super().__init__(message)
        self.bake = bake


@dataclass
class Snapshot:
    """Cumulative request counts and latency buckets of the predict routes at one time."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> count


@dataclass
class BakeFigures:
    """What one endpoint did during the bake window."""

    endpoint: str
    requests: int
    errors: int
    error_rate: float
    p95_ms: float | None
    ready: bool
    breach: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Promotion:
    """The result of a promotion that baked cleanly."""

    model_uri: str
    endpoints: list[str]
    deploys: list[dict[str, Any]]
    bake: list[BakeFigures]


# ---- HTTP -----------------------------------------------------------------------------------
@contextmanager
def admin_client(settings: Settings) -> Iterator[httpx.Client]:
    """An HTTP client with the admin bearer token (when there is one)."""
    import httpx

    token = settings.admin_secret()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(headers=headers, timeout=settings.promote.request_timeout_seconds) as client:
        yield client


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def admin_post(
    client: httpx.Client, endpoint: str, route: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST to an admin route; raises :class:`PromotionFailed` with the endpoint's reason
    unless it answers 200."""
    import httpx

    what = route.rsplit("/", 1)[-1]
    try:
        response = client.post(f"{endpoint}{route}", json=body)
    except httpx.HTTPError as error:
        raise PromotionFailed(f"{endpoint}: {what} request failed: {error}") from None
    if response.status_code != 200:
        raise PromotionFailed(
            f"{endpoint} refused the {what} ({response.status_code}): {_detail(response)}"
        )
    return response.json()


def deploy_endpoint(client: httpx.Client, endpoint: str, model_uri: str) -> dict[str, Any]:
    """``POST /admin/deploy`` of ``model_uri`` (load, smoke checks, switch)."""
    return admin_post(client, endpoint, "/admin/deploy", {"model_uri": model_uri})


def rollback_endpoint(client: httpx.Client, endpoint: str) -> dict[str, Any]:
    """``POST /admin/rollback``: the previous model (idle slot) is live again."""
    return admin_post(client, endpoint, "/admin/rollback")


def put_back(settings: Settings, client: httpx.Client, endpoint: str, target: str) -> str:
    """Make version ``target`` live on ``endpoint``: ``/admin/rollback`` when the idle slot
    holds it, else ``/admin/deploy`` of it; returns how (``rollback`` | ``deploy``).

    Raises:
        PromotionFailed: the endpoint could do neither.
    """

    try:
        rollback_endpoint(client, endpoint)
        if live_version(client, endpoint) != str(target):
            raise PromotionFailed(f"{endpoint}: the idle slot did not hold {target}")
        return "rollback"
    except PromotionFailed:
        deploy_endpoint(client, endpoint, model_uri_for(settings, target))
        return "deploy"


def live_version(client: httpx.Client, endpoint: str) -> str | None:
    """The model version live on the endpoint (``/version``), ``None`` when unknown."""
    import httpx

    try:
        body = client.get(f"{endpoint}/version").json()
    except (httpx.HTTPError, ValueError):
        return None
    live = body.get("live") or {}
    return live.get("model_version") if isinstance(live, dict) else None


def is_ready(client: httpx.Client, endpoint: str) -> bool:
    import httpx

    try:
        return client.get(f"{endpoint}/ready").status_code == 200
    except httpx.HTTPError:
        return False


def read_snapshot(client: httpx.Client, endpoint: str) -> Snapshot:
    """Parse the predict routes' counters and latency histogram from ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get(f"{endpoint}/metrics").text
    snap = Snapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") not in PREDICT_ROUTES:
                continue
            if sample.name == REQUESTS:
                snap.requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    snap.errors += sample.value
            elif sample.name == f"{DURATION}_bucket":
                bound = float(sample.labels["le"])
                snap.buckets[bound] = snap.buckets.get(bound, 0.0) + sample.value
    return snap


def p95_from_buckets(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound (ms) of the histogram bucket holding the 95th percentile of the
    observations made between two snapshots; ``None`` when there were none."""
    deltas = sorted((bound, after.get(bound, 0.0) - before.get(bound, 0.0)) for bound in after)
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return None
    for bound, cumulative in deltas:
        if cumulative >= 0.95 * total:
            return bound * 1000.0
    return None


def bake_figures(
    settings: Settings, endpoint: str, before: Snapshot, after: Snapshot, ready: bool
) -> BakeFigures:
    """The window's figures for one endpoint and the first threshold they break."""
    cfg = settings.promote
    requests = int(after.requests - before.requests)
    errors = int(after.errors - before.errors)
    rate = errors / requests if requests else 0.0
    p95 = p95_from_buckets(before.buckets, after.buckets)
    breach = None
    if not ready:
        breach = f"{endpoint}: /ready failed during the bake window"
    elif rate > cfg.max_error_rate:
        breach = (
            f"{endpoint}: error rate {rate:.3f} ({errors} of {requests} requests) is over "
            f"promote.max_error_rate {cfg.max_error_rate}"
        )
    elif p95 is not None and p95 > cfg.max_p95_ms:
        breach = (
            f"{endpoint}: p95 latency {p95:.0f} ms (histogram bucket bound) is over "
            f"promote.max_p95_ms {cfg.max_p95_ms:.0f}"
        )
    return BakeFigures(endpoint, requests, errors, rate, p95, ready, breach)


def _unreachable(endpoint: str, error: Exception) -> BakeFigures:
    """The figures of an endpoint whose metrics could not be read: a breach."""
    reason = f"{endpoint}: unreachable during the bake window ({one_line(error, 150)})"
    return BakeFigures(endpoint, 0, 0, 0.0, None, False, reason)


def _poll(
    settings: Settings, client: httpx.Client, endpoint: str, start: Snapshot | None
) -> BakeFigures:
    """One endpoint's figures since ``start``; an endpoint that stopped answering (killed,
    its node gone) breaks the bake instead of failing the promotion half-way."""
    import httpx

    try:
        if start is None:
            raise httpx.ConnectError("no metrics at the start of the bake")
        return bake_figures(
            settings, endpoint, start, read_snapshot(client, endpoint), is_ready(client, endpoint)
        )
    except (httpx.HTTPError, ValueError) as error:
        return _unreachable(endpoint, error)


def _first_snapshot(client: httpx.Client, endpoint: str) -> Snapshot | None:
    import httpx

    try:
        return read_snapshot(client, endpoint)
    except (httpx.HTTPError, ValueError):
        return None


def bake(settings: Settings, client: httpx.Client, endpoints: list[str]) -> list[BakeFigures]:
    """Watch every endpoint for ``promote.bake_seconds``; stop at the first breach (an
    endpoint that does not answer is one)."""
    cfg = settings.promote
    start = {endpoint: _first_snapshot(client, endpoint) for endpoint in endpoints}
    deadline = time.monotonic() + cfg.bake_seconds
    log.info("baking for %.0f s on %d endpoint(s)", cfg.bake_seconds, len(endpoints))
    while True:
        last = time.monotonic() >= deadline
        figures = [_poll(settings, client, endpoint, start[endpoint]) for endpoint in endpoints]
        if last or any(f.breach for f in figures):
            return figures
        time.sleep(min(cfg.bake_poll_seconds, max(0.0, deadline - time.monotonic())))


def roll_back(client: httpx.Client, endpoints: list[str]) -> list[str]:
    """Roll back each endpoint; returns the problems (empty when all went back)."""
    problems = []
    for endpoint in endpoints:
        try:
            rollback_endpoint(client, endpoint)
            log.warning("%s rolled back", endpoint)
        except PromotionFailed as error:
            problems.append(str(error))
    return problems


def promote_blue_green(
    settings: Settings,
    model_uri: str,
    switch: Callable[[httpx.Client, str], dict[str, Any]] | None = None,
) -> Promotion:
    """Deploy ``model_uri`` to every endpoint, bake, and roll everything back on failure.

    ``switch(client, endpoint)`` makes the model live on one endpoint and returns the
    endpoint's answer: by default ``/admin/deploy`` of ``model_uri``; the end of an online
    phase swaps to the challenger it already holds (``/admin/ab/stop``) instead.

    Raises:
        PromotionFailed: an endpoint refused; the ones already switched were rolled back.
        BakeFailed: a bake threshold broke; every endpoint was rolled back.
    """
    endpoints = serving_endpoints(settings)
    deploys: list[dict[str, Any]] = []
    with admin_client(settings) as client:
        switched: list[str] = []
        for endpoint in endpoints:
            try:
                if switch is None:
                    deploys.append(deploy_endpoint(client, endpoint, model_uri))
                else:
                    deploys.append(switch(client, endpoint))
            except PromotionFailed as error:
                problems = roll_back(client, switched)
                extra = f"; rollback problems: {'; '.join(problems)}" if problems else ""
                rolled = f"; rolled back {', '.join(switched)}" if switched else ""
                raise PromotionFailed(f"{error}{rolled}{extra}", tuple(switched)) from None
            switched.append(endpoint)
            log.info("%s now serves %s", endpoint, model_uri)
        figures = bake(settings, client, endpoints)
        breaches = [f.breach for f in figures if f.breach]
        if breaches:
            problems = roll_back(client, endpoints)
            extra = f"; rollback problems: {'; '.join(problems)}" if problems else ""
            raise BakeFailed(
                f"bake failed, every endpoint rolled back: {'; '.join(breaches)}{extra}", figures
            )
    return Promotion(model_uri, endpoints, deploys, figures)


# ---- aliases ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AliasMove:
    """Where ``champion`` and ``previous`` point before and after a move."""

    champion_before: str | None
    champion_after: str
    previous_after: str | None


def move_aliases(settings: Settings, new_champion: str) -> AliasMove:
    """``champion`` → ``new_champion``, ``previous`` → the old champion, ``challenger`` removed."""

    old = get_version_by_alias(settings, CHAMPION)
    set_alias(settings, new_champion, CHAMPION)
    if old is not None and old != str(new_champion):
        set_alias(settings, old, PREVIOUS)
    delete_alias(settings, CHALLENGER)
    log.info("aliases: champion %s -> %s, previous -> %s", old, new_champion, old)
    return AliasMove(old, str(new_champion), old)


def one_line(error: BaseException, limit: int = 300) -> str:
    """The first line of ``error``'s message, cut at ``limit`` characters (a library's
    error can hold a whole SQL statement and its parameters)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def move_aliases_or_roll_back(
    settings: Settings, new_champion: str, endpoints: list[str] | None = None
) -> AliasMove:
    """:func:`move_aliases` after a clean bake, all or nothing with the endpoints.

    ``endpoints`` (default: every serving endpoint) serve ``new_champion`` now. When the
    registry fails (store unwritable, tracking server gone), they are rolled back to the
    model they served before and ``champion`` is put back if it had moved, so that the
    aliases, the endpoints and the record (``rolled_back``) agree again.

    Raises:
        AliasMoveFailed: the registry's error (one line) and any rollback problem.
    """

    old = None
    try:
        old = get_version_by_alias(settings, CHAMPION)
        return move_aliases(settings, new_champion)
    except Exception as error:  # whatever the registry raised, the endpoints must go back
        reason = tracking_outage(settings, error) or one_line(error)
    log.warning("aliases not moved (%s): rolling every endpoint back", reason)
    problems = _restore_champion(settings, old)
    with admin_client(settings) as client:
        problems += roll_back(client, endpoints or serving_endpoints(settings))
    extra = f"; rollback problems: {'; '.join(problems)}" if problems else ""
    raise AliasMoveFailed(
        f"aliases not moved to version {new_champion} ({reason}); every endpoint rolled back "
        f"to the previous model{extra}"
    )


def _restore_champion(settings: Settings, old: str | None) -> list[str]:
    """Point ``champion`` back at ``old`` if a partial move left it elsewhere; the
    problem, if the registry cannot even be read, as a one-item list."""

    try:
        if old is not None and get_version_by_alias(settings, CHAMPION) != old:
            set_alias(settings, old, CHAMPION)
    except Exception as error:  # the store that refused the move may refuse this too
        return [f"champion alias not checked: {one_line(error)}"]
    return []
