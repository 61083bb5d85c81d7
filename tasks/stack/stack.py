"""`citeops up` / `down` / `status` as plain functions.

``stack_up`` starts what is not running yet (a second call is harmless), waits for every
health check, and records each process in ``settings.state_dir``; ``stack_down`` stops
exactly the processes recorded there, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from citeops.tasks.redact import redact_url
from citeops.tasks.stack.balancer import BALANCER, balancer_argv, write_config
from citeops.tasks.stack.deploy import deploy_flows, ensure_work_pools
from citeops.tasks.stack.errors import PortTakenError, StackError
from citeops.tasks.stack.health import (
    NOT_READY_HINT,
    http_ok,
    serving_readiness,
    wait_healthy,
    wait_ready,
    worker_online,
)
from citeops.tasks.stack.processes import (
    ProcessRecord,
    is_alive,
    port_is_free,
    port_owner,
    read_record,
    remove_record,
    start_process,
    stop_process,
)
from citeops.tasks.stack.resources import prepare_resources
from citeops.tasks.stack.services import (
    MLFLOW_SERVER,
    PREFECT_SERVER,
    SERVICES,
    SERVING,
    WORKER,
    ServiceSpec,
    build_spec,
    clear_replicas,
    prefect_database_url,
    replica_spec,
    worker_name,
    write_replicas,
)

if TYPE_CHECKING:
    from pathlib import Path

    from citeops.configs.settings import Settings

Note = Callable[[str], None]


@dataclass
class ServiceState:
    """One line of `citeops status` (and of what `up` / `down` did)."""

    name: str
    # running | started | already running | not ready | running, not ready | stopped |
    # not running | skipped | failed
    state: str
    pid: int | None = None
    url: str | None = None
    log: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_services(settings: Settings, only: Iterable[str] | None = None) -> list[str]:
    """The services `up` manages, in start order (``only`` narrows them down).

    Raises:
        StackError: ``only`` names an unknown service.
    """
    wanted = list(only) if only else list(SERVICES)
    unknown = [name for name in wanted if name not in SERVICES]
    if unknown:
        raise StackError(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}")
    if not only and not settings.stack.serve:
        wanted.remove(SERVING)
    return [name for name in SERVICES if name in wanted]


def stack_up(
    settings: Settings, only: Iterable[str] | None = None, note: Note = lambda _: None
) -> list[ServiceState]:
    """Start the selected services that are not running and wait until each is healthy.

    Raises:
        PortTakenError: a port is used by another program (nothing is started then).
        ServiceStartError: a server did not become healthy; the servers this call started
            are stopped again, and the message names the log to read.
        StackError: a database or bucket the production servers need is missing.
    """
    with stack_lock(settings.state_dir):
        return _stack_up(settings, only, note)


@contextmanager
def stack_lock(state_dir: Path) -> Iterator[None]:
    """One `up` or `down` at a time per state folder.

    Raises:
        StackError: another `citeops up` / `down` holds the lock.
    """
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "stack.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another `citeops up` or `citeops down` is running on {state_dir}; "
                "wait for it to finish"
            ) from None
        yield


def _stack_up(settings: Settings, only: Iterable[str] | None, note: Note) -> list[ServiceState]:
    state_dir = settings.state_dir
    names = select_services(settings, only)
    states: dict[str, ServiceState] = {}
    specs = {name: build_spec(name, settings) for name in names}
    running = _running_records(state_dir, names)
    for name, record in running.items():
        states[name] = ServiceState(name, "already running", record.pid, record.url, record.log)
    to_start = [name for name in names if name not in running]
    _check_ports([specs[name] for name in to_start])
    for line in prepare_resources(
        settings, mlflow=MLFLOW_SERVER in to_start, prefect=PREFECT_SERVER in to_start
    ):
        note(line)

    started: list[ProcessRecord] = []

    def launch(name: str) -> ProcessRecord:
        spec = specs[name]
        record = start_process(
            name, spec.argv, spec.env, spec.cwd, state_dir, spec.url, spec.port, spec.stop_signal
        )
        started.append(record)
        states[name] = ServiceState(name, "started", record.pid, record.url, record.log)
        note(f"{name}: started (pid {record.pid}), log {record.log}")
        return record

    timeout = settings.stack.health_timeout_seconds
    try:
        for name in (PREFECT_SERVER, MLFLOW_SERVER):
            if name in to_start:
                launch(name)
        if PREFECT_SERVER in names:
            _wait_http(specs[PREFECT_SERVER], running.get(PREFECT_SERVER), started, timeout, note)
            if settings.stack.deploy_on_up:
                _deploy(settings, states, note)
        if WORKER in to_start:
            ensure_work_pools(settings)
            record = launch(WORKER)
            api, pool = str(settings.stack.prefect_api_url), settings.stack.work_pool
            seconds = wait_healthy(
                specs[WORKER].title,
                lambda: worker_online(api, pool, worker_name(settings)),
                record,
                timeout,
            )
            note(f"{WORKER}: online in {seconds:.1f} s")
        if MLFLOW_SERVER in names:
            _wait_http(specs[MLFLOW_SERVER], running.get(MLFLOW_SERVER), started, timeout, note)
    except StackError:
        _stop_all(settings, started)
        raise
    if SERVING in to_start and settings.stack.replicas > 1:
        _start_replicas(settings, launch, specs, states, timeout, note)
    elif SERVING in to_start:
        _start_serving(specs[SERVING], launch, states, timeout, note, settings)
    return [states[name] for name in recorded_names(settings, states) if name in states]


def recorded_names(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """The stack's process names in start order: the services, with the serving replicas
    and the load balancer of a `up --replicas N` in the serving endpoint's place."""
    names = set(extra) | {
        path.name.removesuffix(".pid.json") for path in settings.state_dir.glob("*.pid.json")
    }
    replicas = sorted(
        (n for n in names if n.startswith(f"{SERVING}-")), key=lambda n: int(n.rsplit("-")[-1])
    )
    ordered: list[str] = []
    for name in SERVICES:
        ordered.append(name)
        if name == SERVING:
            ordered += [*replicas, BALANCER]
    return ordered


def _start_replicas(
    settings: Settings,
    launch: Callable[[str], ProcessRecord],
    specs: dict[str, ServiceSpec],
    states: dict[str, ServiceState],
    timeout: float,
    note: Note,
) -> None:
    """Start ``stack.replicas`` endpoints on serve.port + 1 ... + N, each ready before the
    next, then HAProxy on serve.port in front of them; the replicas' URLs are written for
    promotion (:data:`~citeops.tasks.release.endpoints.REPLICAS_FILE`), which deploys to each."""
    serving = specs[SERVING]
    replicas = [replica_spec(serving, i) for i in range(1, settings.stack.replicas + 1)]
    _check_ports(replicas)
    for spec in replicas:
        specs[spec.name] = spec
        record = launch(spec.name)
        seconds = wait_healthy(
            spec.title, lambda u=str(spec.health_url): http_ok(u), record, timeout
        )
        ready, why = wait_ready(str(spec.url), max(0.0, timeout - seconds))
        if not ready:
            states[spec.name] = ServiceState(spec.name, "not ready", record.pid, spec.url,
                                             record.log, f"{why}; {NOT_READY_HINT}")  # fmt: skip
    urls = [str(spec.url) for spec in replicas]
    write_replicas(settings.state_dir, urls)
    config = write_config(settings, urls, settings.serve.host, settings.serve.port)
    specs[BALANCER] = ServiceSpec(
        BALANCER, "load balancer (HAProxy)", balancer_argv(config), {}, config.parent,
        serving.host, serving.port, serving.url, serving.health_url, "CITEOPS_SERVE__PORT",
    )  # fmt: skip
    record = launch(BALANCER)
    wait_healthy(specs[BALANCER].title, lambda: http_ok(str(serving.health_url)), record, timeout)
    note(f"{BALANCER}: {serving.url} -> {', '.join(urls)} (the app: {serving.url}/app)")


def _running_records(state_dir: Any, names: list[str]) -> dict[str, ProcessRecord]:
    running = {}
    for name in names:
        record = read_record(state_dir, name)
        if record and is_alive(record):
            running[name] = record
        elif record:
            remove_record(state_dir, name)  # stale: the process is gone
    return running


def _check_ports(specs: list[ServiceSpec]) -> None:
    problems = []
    for spec in specs:
        if spec.port is None or port_is_free(str(spec.host), spec.port):
            continue
        owner = port_owner(spec.port)
        by = f" by {owner}" if owner else ""
        problems.append(
            f"port {spec.port} on {spec.host} ({spec.title}) is already in use{by}: "
            f"stop that program or choose another port with {spec.port_setting}=..."
        )
    if problems:
        raise PortTakenError("; ".join(problems) + " (nothing was started)")


def _wait_http(
    spec: ServiceSpec,
    existing: ProcessRecord | None,
    started: list[ProcessRecord],
    timeout: float,
    note: Note,
) -> None:
    record = existing or next(r for r in started if r.name == spec.name)
    url = str(spec.health_url)
    seconds = wait_healthy(spec.title, lambda: http_ok(url), record, timeout)
    if existing is None:
        note(f"{spec.name}: healthy in {seconds:.1f} s at {spec.url}")


def _deploy(settings: Settings, states: dict[str, ServiceState], note: Note) -> None:
    """Deploy prefect.yaml; a failure is reported, not fatal (the servers are fine)."""

    try:
        log = deploy_flows(settings)
        note(f"deployments: prefect.yaml deployed (log {log})")
    except StackError as error:
        note(f"warning: deployments not updated: {error}")


def _start_serving(
    spec: ServiceSpec,
    launch: Callable[[str], ProcessRecord],
    states: dict[str, ServiceState],
    timeout: float,
    note: Note,
    settings: Settings,
) -> None:
    """Start the endpoint; if it fails (e.g. no model registered yet) the rest stays up."""
    record = launch(SERVING)
    url = str(spec.health_url)
    try:
        seconds = wait_healthy(spec.title, lambda: http_ok(url), record, timeout)
    except StackError as error:
        stop_process(record, settings.stack.stop_timeout_seconds)
        remove_record(settings.state_dir, SERVING)
        hint = (
            "the endpoint serves the registered model's `champion` alias: train, register and "
            "promote a model, then run `citeops up` again"
        )
        states[SERVING] = ServiceState(SERVING, "failed", None, spec.url, record.log, hint)
        note(f"warning: {error}\n  {hint}")
        return
    ready, why = wait_ready(str(spec.url), max(0.0, timeout - seconds))
    if ready:
        note(f"{SERVING}: ready in {seconds:.1f} s at {spec.url} (the app: {spec.url}/app)")
        return
    states[SERVING] = ServiceState(
        SERVING, "not ready", record.pid, spec.url, record.log, f"{why}; {NOT_READY_HINT}"
    )
    note(f"warning: {SERVING}: running at {spec.url} but NOT READY: {why}\n  {NOT_READY_HINT}")


def _stop_all(settings: Settings, records: list[ProcessRecord]) -> None:
    for record in reversed(records):
        stop_process(record, settings.stack.stop_timeout_seconds)
        remove_record(settings.state_dir, record.name)


def stack_down(settings: Settings) -> list[ServiceState]:
    """Stop every process `citeops up` recorded (reverse start order); nothing else."""
    with stack_lock(settings.state_dir):
        return _stack_down(settings)


def _stack_down(settings: Settings) -> list[ServiceState]:
    states = []
    clear_replicas(settings.state_dir)
    for name in reversed(recorded_names(settings)):
        record = read_record(settings.state_dir, name)
        if record is None:
            states.append(ServiceState(name, "not running"))
            continue
        started = time.monotonic()
        stopped = stop_process(record, settings.stack.stop_timeout_seconds)
        remove_record(settings.state_dir, name)
        state = "stopped" if stopped else "not running"
        note = (
            f"stopped in {time.monotonic() - started:.1f} s"
            if stopped
            else "stale PID file removed"
        )
        states.append(ServiceState(name, state, record.pid, record.url, record.log, note))
    return list(reversed(states))


def stack_status(settings: Settings) -> list[ServiceState]:
    """What runs now: each recorded process, whether it is alive and answers its check."""
    states = []
    for name in recorded_names(settings):
        record = read_record(settings.state_dir, name)
        if record is None:
            if name in SERVICES:
                states.append(ServiceState(name, "not running"))
        elif not is_alive(record):
            states.append(
                ServiceState(
                    name,
                    "not running",
                    record.pid,
                    record.url,
                    record.log,
                    "stale PID file (the process is gone)",
                )
            )
        elif name == SERVING or name.startswith(f"{SERVING}-"):
            states.append(_serving_state(settings, record, name))
        else:
            healthy = (
                http_ok(f"{record.url}/health")
                if name == BALANCER
                else _healthy_now(settings, name)
            )
            state = "running" if healthy else "running, not answering"
            states.append(ServiceState(name, state, record.pid, record.url, record.log))
    return states


def _serving_state(settings: Settings, record: ProcessRecord, name: str) -> ServiceState:
    """An endpoint is "running" only when it is ready (a live model answers)."""
    url = record.url or str(build_spec(SERVING, settings).url)
    if not http_ok(f"{url}/health"):
        return ServiceState(name, "running, not answering", record.pid, record.url, record.log)
    ready, why = serving_readiness(url)
    if ready:
        return ServiceState(name, "running", record.pid, record.url, record.log)
    note = f"{why}; {NOT_READY_HINT}"
    return ServiceState(name, "running, not ready", record.pid, record.url, record.log, note)


def _healthy_now(settings: Settings, name: str) -> bool:
    if name == WORKER:
        api = str(settings.stack.prefect_api_url)
        return worker_online(api, settings.stack.work_pool, worker_name(settings))
    spec = build_spec(name, settings)
    return http_ok(str(spec.health_url))


def stack_config(settings: Settings) -> dict[str, Any]:
    """The stores and URLs the stack uses, with any password masked (safe to print)."""
    return {
        "profile": settings.profile,
        "home": str(settings.home),
        "state_dir": str(settings.state_dir),
        "prefect_api_url": settings.stack.prefect_api_url,
        "prefect_database": redact_url(prefect_database_url(settings)),
        "work_pool": settings.stack.work_pool,
        "train_work_pool": settings.stack.train_work_pool,
        "mlflow_tracking_uri": redact_url(settings.mlflow.tracking_uri),
        "mlflow_backend_store": redact_url(settings.mlflow.backend_store_uri),
        "mlflow_artifacts_destination": settings.mlflow.artifacts_destination,
        "store_url": redact_url(settings.store_url),
        "log_root": settings.log_root,
        "s3_endpoint_url": settings.s3.endpoint_url,
    }
