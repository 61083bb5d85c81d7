"""The online phase of a challenger on every serving endpoint: start, status, review and
conclusion, all or nothing across the replicas, with the promotion bookkeeping.

An online phase sits between the gate and the swap (``promote.online``): each endpoint
loads the challenger into its idle slot (``POST /admin/ab/start``) and either gives it a
sticky share of the traffic (``split``) or lets it score a copy of a share (``shadow``);
the live slot keeps serving. If one endpoint refuses the start, the experiment is aborted
on those that had started. The A/B report (:mod:`citeops.tasks.release.online_report`)
gives the verdict; :func:`conclude_experiment` then promotes (``/admin/ab/stop``
``promote`` on every endpoint through :func:`~citeops.tasks.release.promote.
promote_blue_green`: the same rollback on refusal, bake and auto-rollback, then the
aliases) or aborts (the champion stays, the ``challenger`` alias goes). Each start and each
conclusion leaves a promotion record of kind ``online`` (outcome ``online`` when started;
``promoted``, ``aborted``, ``rolled_back`` or ``failed`` when concluded) whose ``gate``
holds the offline gate decision and, under ``online``, the experiment and its report.

Functions that talk to endpoints take an ``httpx.Client`` (with the admin token, see
:func:`~citeops.tasks.release.promote.admin_client`) and the endpoint list, so the caller
decides where they go.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError
from citeops.tasks.inference.aliases import CHALLENGER, CHAMPION, model_uri_for
from citeops.tasks.registry.register import (
    delete_alias,
    get_version_by_alias,
    require_version,
    set_alias,
)
from citeops.tasks.release.online_report import (
    MODES,
    Experiment,
    OnlineReport,
    build_report,
    read_experiment_logs,
)
from citeops.tasks.release.promote import (
    PromotionFailed,
    admin_post,
    move_aliases_or_roll_back,
    promote_blue_green,
)

if TYPE_CHECKING:
    import httpx

    from citeops.configs.settings import Settings
    from citeops.tasks.release.lifecycle import PromotionRun
    from citeops.tasks.store.promotions import PromotionRecord

log = logging.getLogger(__name__)

START, STATUS, STOP = "/admin/ab/start", "/admin/ab", "/admin/ab/stop"
ACTIONS = ("promote", "abort")
RECORDS_SEARCHED = 200  # how far back the records of an experiment are looked for
# promote.online -> the endpoints' experiment mode
ONLINE_MODES = {"ab": "split", "shadow": "shadow"}


class ExperimentFailed(CiteopsError):
    """An endpoint refused or failed an experiment call; ``aborted`` names the endpoints
    on which a half-started experiment was aborted again."""

    def __init__(self, message: str, aborted: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.aborted = aborted


class NoExperiment(CiteopsError):
    """No online phase is active on the endpoints."""


class EndpointsDisagree(CiteopsError):
    """The endpoints do not run the same experiment (some run none, or another one)."""


# ---- admin calls ------------------------------------------------------------------------
def admin_get(client: httpx.Client, endpoint: str, route: str) -> dict[str, Any]:
    """GET an admin route; raises :class:`ExperimentFailed` unless it answers 200."""
    import httpx

    try:
        response = client.get(f"{endpoint}{route}")
    except httpx.HTTPError as error:
        raise ExperimentFailed(f"{endpoint}: {route} request failed: {error}") from None
    if response.status_code != 200:
        raise ExperimentFailed(f"{endpoint} answered {response.status_code} to {route}")
    return response.json()


def stop_on(client: httpx.Client, endpoints: list[str], action: str) -> list[str]:
    """``POST /admin/ab/stop`` with ``action`` on each endpoint; returns the problems."""
    problems = []
    for endpoint in endpoints:
        try:
            admin_post(client, endpoint, STOP, {"action": action})
            log.info("%s: experiment stopped (%s)", endpoint, action)
        except PromotionFailed as error:
            problems.append(str(error))
    return problems


def abandon(client: httpx.Client, started: list[str], why: str) -> ExperimentFailed:
    """Abort the experiment where it had started; the error that says why and what."""
    problems = stop_on(client, started, "abort")
    aborted = f"; aborted on {', '.join(started)}" if started else ""
    extra = f"; abort problems: {'; '.join(problems)}" if problems else ""
    return ExperimentFailed(f"{why}{aborted}{extra}", tuple(started))


def start_on_endpoints(
    client: httpx.Client, endpoints: list[str], body: dict[str, Any]
) -> list[dict[str, Any]]:
    """Start the experiment ``body`` on every endpoint in turn, all or nothing: when one
    refuses, or the endpoints turn out to serve different champions, the experiment is
    aborted on those already started.

    Raises:
        ExperimentFailed: the reason, and where the experiment was aborted again.
    """
    started: list[str] = []
    answers: list[dict[str, Any]] = []
    for endpoint in endpoints:
        try:
            answers.append(admin_post(client, endpoint, START, body))
        except PromotionFailed as error:
            raise abandon(client, started, str(error)) from None
        started.append(endpoint)
        log.info("%s: experiment %s started", endpoint, body.get("experiment_id"))
    champions = sorted({str(answer.get("champion_version")) for answer in answers})
    if len(champions) > 1:
        raise abandon(client, started, f"the endpoints serve different champions: {champions}")
    return answers


@dataclass
class OnlineStatus:
    """Each endpoint's ``GET /admin/ab`` answer."""

    endpoints: dict[str, dict[str, Any]]

    def active(self) -> list[str]:
        return [e for e, body in self.endpoints.items() if body.get("active")]

    def experiment(self) -> Experiment | None:
        """The experiment every endpoint runs, ``None`` when none runs one; started at the
        earliest start of the endpoints.

        Raises:
            EndpointsDisagree: some endpoints run none or another experiment.
        """
        active = self.active()
        if not active:
            return None
        ids = {str(self.endpoints[e].get("experiment_id")) for e in active}
        idle = [e for e in self.endpoints if e not in active]
        if len(ids) > 1 or idle:
            raise EndpointsDisagree(
                f"the endpoints disagree: experiments {sorted(ids)} on {', '.join(active)}"
                + (f", none on {', '.join(idle)}" if idle else "")
                + "; end it everywhere with `citeops ab stop --abort`"
            )
        return self.any_experiment()

    def any_experiment(self) -> Experiment | None:
        """The experiment of the first active endpoint (to abort a half-started one)."""
        active = self.active()
        if not active:
            return None
        first = Experiment.from_status(self.endpoints[active[0]])
        starts = [Experiment.from_status(self.endpoints[e]).started_at for e in active]
        return replace(first, started_at=min(starts), endpoints=tuple(active))

    def counts(self) -> dict[str, Any]:
        """The endpoints' own counters summed: requests per arm, shadow scored / dropped."""
        totals: dict[str, dict[str, int]] = {"requests": {}, "shadow": {}}
        for body in self.endpoints.values():
            for group, values in totals.items():
                for name, count in (body.get(group) or {}).items():
                    values[name] = values.get(name, 0) + int(count)
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {"endpoints": self.endpoints, "counts": self.counts()}


def read_status(client: httpx.Client, endpoints: list[str]) -> OnlineStatus:
    """``GET /admin/ab`` of every endpoint.

    Raises:
        ExperimentFailed: an endpoint cannot be read.
    """
    return OnlineStatus({endpoint: admin_get(client, endpoint, STATUS) for endpoint in endpoints})


def require_experiment(status: OnlineStatus) -> Experiment:
    """The running experiment. Raises :class:`NoExperiment` or :class:`EndpointsDisagree`."""
    experiment = status.experiment()
    if experiment is None:
        raise NoExperiment("no online phase is active (start one with `citeops ab start`)")
    return experiment


# ---- start ------------------------------------------------------------------------------
def online_mode(settings: Settings) -> str | None:
    """The experiment mode ``promote.online`` asks for, ``None`` for no online phase."""
    return ONLINE_MODES.get(settings.promote.online)


@dataclass(frozen=True)
class ExperimentPlan:
    """What to start: registered ``version`` in ``mode`` on ``share`` of the traffic;
    ``seed`` of the endpoints' per-request assignment."""

    version: str
    mode: str
    share: float
    seed: int = 0


def start_experiment(
    settings: Settings, client: httpx.Client, endpoints: list[str], plan: ExperimentPlan
) -> Experiment:
    """Put ``plan.version`` in its online phase on every endpoint (all or nothing) and
    point the ``challenger`` alias at it.

    Raises:
        ExperimentFailed: a bad mode or share, the version is the champion, or an endpoint
            refused (the experiment was aborted where it had started).
        RegistryError: the version does not exist.
    """

    version, mode = str(plan.version), plan.mode
    if mode not in MODES:
        raise ExperimentFailed(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if not 0 < plan.share <= 1:
        raise ExperimentFailed(f"share {plan.share}: expected more than 0 and at most 1")
    require_version(settings, version)
    if get_version_by_alias(settings, CHAMPION) == version:
        raise ExperimentFailed(f"version {version} is the champion already")
    body = {
        "model_uri": model_uri_for(settings, version),
        "share": plan.share,
        "mode": mode,
        "experiment_id": f"v{version}-{mode}-{uuid.uuid4().hex[:8]}",
        "seed": plan.seed,
    }
    started_at = datetime.now(UTC)
    answers = start_on_endpoints(client, endpoints, body)
    set_alias(settings, version, CHALLENGER)
    experiment = Experiment.from_status({"started_at": started_at.isoformat()} | answers[0])
    return replace(experiment, endpoints=tuple(endpoints))


def record_online_start(run: PromotionRun, experiment: Experiment) -> dict[str, Any]:
    """End ``run``'s record with outcome ``online``: the challenger is in its online phase
    (``gate.online`` holds the experiment); returns the record."""
    run.record.version = experiment.challenger_version
    run.record.gate = dict(run.record.gate) | {
        "online": {"experiment": experiment.to_dict(), "report": None}
    }
    return run.finish(
        "online",
        f"version {experiment.challenger_version} in its online phase ({experiment.mode}, "
        f"share {experiment.share:.0%}) on {len(experiment.endpoints)} endpoint(s), "
        f"experiment {experiment.experiment_id}: `citeops ab report`",
    )


def start_online_phase(
    settings: Settings, client: httpx.Client, endpoints: list[str], plan: ExperimentPlan
) -> dict[str, Any]:
    """``citeops ab start``: start the experiment and leave a record of kind ``online``
    (its gate marked skipped: a manual start is not gated). Returns the record."""
    from citeops.tasks.release.lifecycle import PromotionRun

    trigger = {"causes": ["manual"], "reasons": [f"ab start {plan.mode} share {plan.share}"]}
    run = PromotionRun.open(settings, "online", trigger, version=str(plan.version))
    run.record.gate = {"skipped": True, "passed": None, "reasons": ["manual online phase"]}
    with run.recorded():
        return record_online_start(run, start_experiment(settings, client, endpoints, plan))


# ---- report, review, conclusion ---------------------------------------------------------
def experiment_report(
    settings: Settings, status: OnlineStatus, now: datetime | None = None
) -> OnlineReport:
    """The A/B report of the experiment the endpoints run.

    Raises:
        NoExperiment, EndpointsDisagree: nothing (or not one thing) to report on.
        SourceError: the logs cannot be read.
    """
    experiment = require_experiment(status)
    logs = read_experiment_logs(settings, experiment)
    return build_report(settings, experiment, logs, now, status.counts())


def started_experiment_id(record: PromotionRecord) -> str | None:
    """The experiment a record of outcome ``online`` started, else ``None``."""
    online = (record.gate or {}).get("online") or {}
    if record.outcome != "online":
        return None
    return (online.get("experiment") or {}).get("experiment_id")


def origin_record(settings: Settings, experiment_id: str) -> PromotionRecord | None:
    """The record of the run that started ``experiment_id`` (outcome ``online``)."""
    from citeops.tasks.store.promotions import list_records

    for record in list_records(settings, limit=RECORDS_SEARCHED):
        if started_experiment_id(record) == experiment_id:
            return record
    return None


def open_experiment_record(settings: Settings) -> PromotionRecord | None:
    """The newest record that started an experiment no later record concluded: an online
    phase citeops started and has not ended (the monitor looks at the endpoints only then)."""
    from citeops.tasks.store.promotions import list_records

    concluded: set[str] = set()
    for record in list_records(settings, limit=RECORDS_SEARCHED):  # newest first
        ended = (record.trigger or {}).get("experiment_id")
        if ended and record.kind == "online" and record.outcome not in ("running", "online"):
            concluded.add(str(ended))
        started = started_experiment_id(record)
        if started and started not in concluded:
            return record
    return None


def open_conclusion(
    settings: Settings,
    experiment: Experiment,
    report: OnlineReport | None,
    action: str,
    reason: str,
) -> PromotionRun:
    """A record of kind ``online`` for the end of ``experiment``: the offline gate of the
    run that started it, the online figures beside it (``gate.online``)."""
    from citeops.tasks.release.lifecycle import PromotionRun
    from citeops.tasks.store.promotions import save_record

    origin = origin_record(settings, experiment.experiment_id)
    trigger = {
        "causes": ["online"],
        "reasons": [reason],
        "action": action,
        "experiment_id": experiment.experiment_id,
        "started_by": origin.id if origin else None,
    }
    run = PromotionRun.open(settings, "online", trigger, version=experiment.challenger_version)
    started = ((origin.gate if origin else {}) or {}).get("online") or {}
    run.record.gate = dict(origin.gate if origin else {}) | {
        "online": started
        | {"experiment": experiment.to_dict(), "report": report.to_dict() if report else None}
    }
    if origin:
        run.record.data = origin.data
        run.record.mlflow_run_ids = dict(origin.mlflow_run_ids)
    save_record(settings, run.record)
    return run


def abort_experiment(
    run: PromotionRun, client: httpx.Client, endpoints: list[str], reason: str
) -> dict[str, Any]:
    """Abort on ``endpoints`` (the champion stays live), drop the ``challenger`` alias."""

    problems = stop_on(client, endpoints, "abort")
    if problems:
        raise ExperimentFailed(f"abort failed: {'; '.join(problems)}")
    version = run.record.version
    if version and get_version_by_alias(run.settings, CHALLENGER) == version:
        delete_alias(run.settings, CHALLENGER)
    return run.finish("aborted", f"version {version} aborted, the champion stays live: {reason}")


def abort_leftovers(client: httpx.Client, endpoints: list[str]) -> None:
    """After a refused promotion: abort the experiment wherever it still runs (best
    effort: a problem is logged, the refusal is what the caller reports)."""
    try:
        problems = stop_on(client, read_status(client, endpoints).active(), "abort")
    except CiteopsError as error:
        problems = [str(error)]
    if problems:
        log.warning("experiment not aborted everywhere: %s", "; ".join(problems))


def promote_experiment(
    run: PromotionRun, client: httpx.Client, endpoints: list[str], reason: str
) -> dict[str, Any]:
    """The challenger goes live on every endpoint as in a blue-green promotion (rollback of
    the switched ones when one refuses, then the experiment aborted where it still runs;
    bake and auto-rollback), then the aliases move.

    Raises:
        PromotionFailed, BakeFailed: recorded (``failed`` / ``rolled_back``); the champion
            is live again everywhere.
    """

    version = str(run.record.version)

    def swap(endpoint_client: httpx.Client, endpoint: str) -> dict[str, Any]:
        return admin_post(endpoint_client, endpoint, STOP, {"action": "promote"})

    with run.stage("rolled_back"):
        try:
            promotion = promote_blue_green(run.settings, model_uri_for(run.settings, version), swap)
        except PromotionFailed:
            abort_leftovers(client, endpoints)
            raise
    run.baked(promotion)
    with run.stage("rolled_back"):
        move_aliases_or_roll_back(run.settings, version, promotion.endpoints)
    return run.finish("promoted", f"version {version} is live after its online phase: {reason}")


def conclude_experiment(
    settings: Settings,
    client: httpx.Client,
    endpoints: list[str],
    action: str,
    reason: str = "manual",
    report: OnlineReport | None = None,
) -> dict[str, Any]:
    """End the running experiment: ``promote`` or ``abort`` (``citeops ab stop``, or the
    monitor on the report's verdict), under the retrain lock; returns the record.

    Raises:
        NoExperiment, EndpointsDisagree: nothing (or not one thing) to conclude; an abort
            ends a half-started experiment wherever it runs.
        LockHeld: a retrain, promotion or rollback is running.
        PromotionFailed, BakeFailed, ExperimentFailed: recorded.
    """
    from citeops.tasks.store.promotions import hold_lock

    if action not in ACTIONS:
        raise ExperimentFailed(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
    with hold_lock(settings):
        status = read_status(client, endpoints)
        experiment = status.any_experiment() if action == "abort" else status.experiment()
        if experiment is None:
            raise NoExperiment("no online phase is active: nothing to stop")
        if report is None:
            report = report_or_none(settings, status, experiment, action)
        run = open_conclusion(settings, experiment, report, action, reason)
        with run.recorded():
            if action == "abort":
                return abort_experiment(run, client, status.active(), reason)
            return promote_experiment(run, client, endpoints, reason)


def report_or_none(
    settings: Settings, status: OnlineStatus, experiment: Experiment, action: str
) -> OnlineReport | None:
    """The report for the record; an abort goes ahead without one if the logs cannot be
    read (a promotion does not)."""
    try:
        logs = read_experiment_logs(settings, experiment)
    except CiteopsError as error:
        if action != "abort":
            raise
        log.warning("no A/B report for the record: %s", error)
        return None
    return build_report(settings, experiment, logs, None, status.counts())


def close_lost_experiment(settings: Settings, opened: PromotionRecord) -> dict[str, Any]:
    """Record the end of an experiment that no endpoint runs any more (ended outside
    citeops, or lost with a restart): outcome ``aborted``, the champion serves."""
    stored = Experiment.from_status(opened.gate["online"]["experiment"])
    why = f"no endpoint runs experiment {stored.experiment_id} any more (record #{opened.id})"
    log.warning("online phase lost: %s", why)
    run = open_conclusion(settings, stored, None, "abort", why)
    return run.finish("aborted", why)


def review_experiment(
    settings: Settings, client: httpx.Client, endpoints: list[str], now: datetime | None = None
) -> dict[str, Any]:
    """The monitor's review of the online phase: nothing when none runs; else the report,
    and on a ``promote`` or ``abort`` verdict the conclusion (with its record).

    Only an experiment citeops started and no record concluded is looked for (the
    endpoints are not called otherwise).

    Returns:
        ``{"active": False}``, or ``{"active": True, "report": ..., "action": None |
        "promote" | "abort", "record": ... (when acted)}``.
    """
    opened = open_experiment_record(settings)
    if opened is None:
        return {"active": False}
    status = read_status(client, endpoints)
    if status.experiment() is None:
        return {"active": False, "record": close_lost_experiment(settings, opened)}
    report = experiment_report(settings, status, now)
    log.info("online phase %s: %s", report.experiment.experiment_id, report.reason)
    out: dict[str, Any] = {"active": True, "report": report.to_dict(), "action": None}
    if report.verdict == "continue":
        return out
    record = conclude_experiment(settings, client, endpoints, report.verdict, report.reason, report)
    return out | {"action": report.verdict, "record": record}
