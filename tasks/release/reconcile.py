"""What a killed run leaves behind, put right before the next lifecycle command works.

A retrain, promotion or rollback killed with SIGKILL (or whose machine went down) cannot
clean up: its record stays ``running``, and if it died during the bake an endpoint serves
the half-promoted version while ``champion`` names the old one. :func:`reconcile` runs
first in every lifecycle command (promote, rollback, retrain, history, monitor): records
whose process is gone become ``abandoned``, and endpoints that do not serve ``champion``
are put back on it. Endpoints are touched only while no live run holds the retrain lock
(a running promotion's bake legitimately serves a version that is not yet champion).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from citeops.tasks.inference.aliases import CHAMPION
from citeops.tasks.registry.register import get_version_by_alias
from citeops.tasks.release.endpoints import serving_endpoints
from citeops.tasks.release.promote import (
    PromotionFailed,
    admin_client,
    live_version,
    one_line,
    put_back,
)

if TYPE_CHECKING:
    import httpx

    from citeops.configs.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Reconciled:
    """What :func:`reconcile` found and did."""

    abandoned: list[int] = field(default_factory=list)  # record ids closed as abandoned
    put_back: list[str] = field(default_factory=list)  # "<endpoint>: <live> -> <champion>"
    problems: list[str] = field(default_factory=list)  # one line each, for the operator
    endpoints_checked: bool = False


def reconcile(settings: Settings, lock_held: bool = False) -> Reconciled:
    """Close orphaned ``running`` records and put endpoints back on ``champion``.

    ``lock_held``: the caller holds the retrain lock (promote, rollback, retrain); else the
    lock is taken for the endpoint check without waiting, and the check is skipped when a
    live run holds it. Never raises for an endpoint it cannot reach or fix: that is a
    ``problems`` line, logged.
    """
    from citeops.tasks.store.promotions import LockHeld, abandon_orphaned_records, hold_lock

    done = Reconciled(abandoned=[r.id for r in abandon_orphaned_records(settings) if r.id])
    if lock_held:
        _reconcile_endpoints(settings, done)
        return done
    try:
        with hold_lock(settings, wait_seconds=0):
            _reconcile_endpoints(settings, done)
    except LockHeld:
        log.info("a run holds the retrain lock: endpoints not checked")
    return done


def _reconcile_endpoints(settings: Settings, done: Reconciled) -> None:

    try:
        champion = get_version_by_alias(settings, CHAMPION)
        endpoints = serving_endpoints(settings) if champion else []
    except Exception as error:  # a registry or DNS outage must not stop the command
        done.problems.append(f"endpoints not checked: {one_line(error)}")
        log.warning(done.problems[-1])
        return
    with admin_client(settings) as client:
        for endpoint in endpoints:
            _reconcile_endpoint(settings, client, endpoint, str(champion), done)
    done.endpoints_checked = True


def _reconcile_endpoint(
    settings: Settings, client: httpx.Client, endpoint: str, champion: str, done: Reconciled
) -> None:
    """Put one endpoint back on ``champion`` when it serves another version."""

    live = live_version(client, endpoint)
    if live is None or live == champion:
        return  # unreachable (it loads the champion when it starts) or right
    try:
        how = put_back(settings, client, endpoint, champion)
    except PromotionFailed as error:
        done.problems.append(
            f"{endpoint} serves version {live}, not the champion {champion}, and could not "
            f"be put back ({error}); `citeops rollback` or `citeops promote --version "
            f"{champion} --skip-gate` does it once the endpoint answers"
        )
        log.warning(done.problems[-1])
        return
    done.put_back.append(f"{endpoint}: {live} -> {champion}")
    log.warning(
        "%s served version %s, not the champion: back on %s (%s)", endpoint, live, champion, how
    )
