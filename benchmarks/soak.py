"""`citeops bench soak`: a bounded soak of the serving endpoint under mixed traffic.

One ``citeops serve`` process on a fresh home (its own log root and SQLite store) is driven
for ``minutes`` at a steady, open-loop ``rate`` of requests per second, mixing ``POST
/predict``, authenticated ``POST /feedback`` and the app at ``/app`` (a verify, then the
feedback button, in one app session, through the app's own HTTP API with
``gradio_client``). Meanwhile a deploy or a rollback alternates every ``swap_every``
seconds, and ``citeops ingest`` runs every ``ingest_every`` seconds on the endpoint's log
root, as an operator's schedule would.

Warm-up (not measured): a few requests of each kind, one deploy + rollback (so that both
slots hold a model), then ``bench.soak_warmup_seconds`` of the soak's traffic, before the
server's RSS is first read. At the end the server is
stopped gracefully (it publishes its open log parts), a last ingest runs, and the store's
manifest says what every feedback line became.

Goals (``bench.soak_*``): no failed request, swap or ingest; no acknowledged feedback line
lost (acknowledged == lines ingested, each accepted, duplicate, conflict or quarantined);
server RSS growth after warm-up within ``soak_max_rss_growth``; p99 of the last row within
``soak_max_p99_ratio`` times the first.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.benchmarks.serve import (
    BenchError,
    ServerProcess,
    bench_model_folder,
    bench_pairs,
    drive,
    process_rss_mb,
    start_server,
)
from citeops.tasks.data.multivers import LABELS
from citeops.tasks.stack.processes import free_port

if TYPE_CHECKING:
    from citeops.benchmarks.settings import BenchSettings
    from citeops.configs.settings import Settings

Progress = Callable[[str], None]

# one cycle of the traffic mix: 60 % /predict, 20 % /feedback, 20 % app actions
MIX = ("predict", "feedback", "predict", "app", "predict", "predict", "feedback", "predict",
       "app", "predict")  # fmt: skip
KINDS = ("predict", "feedback", "app_verify", "app_feedback")
CLI_ENTRY = "import sys; from citeops.flows.cli import main; main(sys.argv[1:])"
# the app's feedback buttons, in LABELS order (gradio names a functools.partial so)
APP_FEEDBACK_APIS = ("/partial", "/partial_1", "/partial_2")
FEEDBACK_PER_CLIENT_PER_MINUTE = 30  # half of feedback.rate_per_minute's default
REQUEST_TIMEOUT_SECONDS = 120.0
WARMUP_REQUESTS = 8


@dataclass(frozen=True)
class SoakOptions:
    """What the soak runs besides its workload (``bench.soak_*``: minutes, rate, swap and
    ingest intervals, goals)."""

    model_uri: str | None = None
    row_seconds: float = 60.0  # width of a report row (and of the progress interval)
    app_sessions: int = 2


@dataclass
class Sample:
    """One request: its kind, when it was sent (s after the start), latency, outcome."""

    kind: str
    sent: float
    seconds: float
    ok: bool
    reason: str = ""


@dataclass
class SoakLog:
    """Everything the run saw, appended to by the traffic, swap and ingest tasks."""

    samples: list[Sample] = field(default_factory=list)
    swaps: list[dict[str, Any]] = field(default_factory=list)
    ingests: list[dict[str, Any]] = field(default_factory=list)
    rss_mb: list[float | None] = field(default_factory=list)
    feedback_acknowledged: int = 0
    queries_answered: int = 0
    started: float = 0.0  # perf_counter at the start of the measured run
    warmup: dict[str, Any] = field(default_factory=dict)

    def count_success(self, kind: str) -> None:
        """Count a log line the endpoint wrote for a successful request of ``kind``."""
        if kind in ("feedback", "app_feedback"):
            self.feedback_acknowledged += 1
        else:
            self.queries_answered += 1


# ---- the endpoint -----------------------------------------------------------------------
def soak_env(
    settings: Settings, home: Path, token: str, api_keys: dict[str, str]
) -> dict[str, str]:
    """The server's (and the ingest's) environment: a fresh home with its own log root and
    SQLite store, the admin token, and the soak's feedback API keys."""
    env = {
        **os.environ,
        "CITEOPS_HOME": str(home),
        "CITEOPS_ADMIN_TOKEN": token,
        "CITEOPS_FEEDBACK__API_KEYS": ",".join(f"{c}:{k}" for c, k in api_keys.items()),
        "CITEOPS_SERVE__PRECISION": settings.serve.precision,
        "CITEOPS_SERVE__RUNTIME": settings.serve.runtime,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name in ("CITEOPS_LOG_ROOT", "CITEOPS_STORE_URL"):
        env.pop(name, None)  # never the user's logs or store
    return env


def feedback_clients(rate: float) -> dict[str, str]:
    """``{client id: API key}``: enough clients that none of them exceeds
    :data:`FEEDBACK_PER_CLIENT_PER_MINUTE` at ``rate`` requests/s."""
    per_minute = rate * 60 * MIX.count("feedback") / len(MIX)
    count = max(2, math.ceil(per_minute / FEEDBACK_PER_CLIENT_PER_MINUTE))
    return {f"soak-{n}": secrets.token_hex(16) for n in range(count)}


def server_rss_mb(server: ServerProcess) -> float | None:
    """Resident memory of the server and its children, MiB (None once it has exited)."""
    import psutil

    own = process_rss_mb(server)
    if own is None:
        return None
    try:
        children = psutil.Process(server.proc.pid).children(recursive=True)
        extra = sum(child.memory_info().rss for child in children) / 2**20
    except psutil.Error:
        extra = 0.0
    return round(own + extra, 1)


async def run_ingest(env: dict[str, str], started: float) -> dict[str, Any]:
    """``citeops ingest --json`` on the endpoint's log root, in its own process; its report
    with when it ran, how long it took and its exit status."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI_ENTRY, "ingest", "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    row: dict[str, Any] = {
        "at": round(t0 - started, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "rc": proc.returncode,
    }
    if proc.returncode == 0:
        report = json.loads(out)
        row |= {k: report[k] for k in ("objects", "lines", "accepted", "quarantined")}
    else:
        row["error"] = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1][:300]
    return row


def ingested_by_kind(home: Path) -> dict[str, dict[str, int]]:
    """What the store's manifest says every ingested line became, per kind of log
    (feedback, queries): lines, accepted, duplicates, conflicts, quarantined."""
    import sqlalchemy as sa

    from citeops.tasks.store.schema import ingest_objects

    columns = ("lines", "accepted", "duplicates", "conflicts", "quarantined")
    totals = {kind: dict.fromkeys(columns, 0) for kind in ("feedback", "queries")}
    database = home / "citeops.db"
    if not database.is_file():
        return totals
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        sums = [sa.func.sum(ingest_objects.c[name]) for name in columns]
        query = sa.select(ingest_objects.c.kind, *sums).group_by(ingest_objects.c.kind)
        with engine.connect() as conn:
            for kind, *values in conn.execute(query):
                totals[kind] = {name: int(v or 0) for name, v in zip(columns, values, strict=True)}
    finally:
        engine.dispose()
    return totals


# ---- traffic ----------------------------------------------------------------------------
@dataclass
class Traffic:
    """What the requests are made of and who sends them."""

    base_url: str
    predict_pairs: Sequence[tuple[str, str]]
    labelled: Sequence[tuple[str, str, str]]  # (claim, evidence, gold label) for feedback
    api_keys: list[str]
    app_pool: asyncio.Queue[Any]
    executor: ThreadPoolExecutor


def open_app_session(base_url: str) -> Any:
    """One app session (``gradio_client``), as a browser tab would hold."""
    from gradio_client import Client

    return Client(f"{base_url}/app/", verbose=False, download_files=False)


@dataclass
class AppSession:
    """An app session and whether its next action is the feedback button."""

    client: Any
    rated_next: bool = False
    label: str = LABELS[0]


def app_verify(session: AppSession, claim: str, evidence: str, label: str) -> None:
    """Press Verify in ``session``; its feedback button next rates this answer."""
    session.client.predict(claim, evidence, None, 5, api_name="/verify")
    session.label, session.rated_next = label, True


def app_feedback(session: AppSession) -> None:
    """Press the feedback button of the session's gold label.

    Raises:
        BenchError: the app answered that the feedback was not recorded.
    """
    api = APP_FEEDBACK_APIS[LABELS.index(session.label)]
    answer = session.client.predict(api_name=api)
    session.rated_next = False
    if not str(answer).startswith("Thanks"):
        raise BenchError(str(answer)[:200])


async def one_request(http: Any, traffic: Traffic, kind: str, index: int) -> tuple[str, bool, str]:
    """Send request number ``index`` of ``kind`` (``app``: the session's next action);
    ``(kind sent, ok, failure reason)``."""
    import httpx

    if kind == "predict":
        claim, evidence = traffic.predict_pairs[index % len(traffic.predict_pairs)]
        try:
            response = await http.post("/predict", json={"claim": claim, "evidence": evidence})
        except httpx.HTTPError as error:
            return kind, False, type(error).__name__
        return kind, response.status_code == 200, str(response.status_code)
    claim, evidence, label = traffic.labelled[index % len(traffic.labelled)]
    if kind == "feedback":
        key = traffic.api_keys[index % len(traffic.api_keys)]
        body = {"claim": claim, "evidence": evidence, "user_label": label}
        try:
            response = await http.post(
                "/feedback", json=body, headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.HTTPError as error:
            return kind, False, type(error).__name__
        return kind, response.status_code == 202, str(response.status_code)
    session: AppSession = await traffic.app_pool.get()
    kind = "app_feedback" if session.rated_next else "app_verify"
    loop = asyncio.get_running_loop()
    try:
        if kind == "app_verify":
            action = lambda: app_verify(session, claim, evidence, label)  # noqa: E731
        else:
            action = lambda: app_feedback(session)  # noqa: E731
        await loop.run_in_executor(traffic.executor, action)
    except Exception as error:  # noqa: BLE001 - gradio_client raises several types
        return kind, False, type(error).__name__
    finally:
        traffic.app_pool.put_nowait(session)
    return kind, True, ""


async def timed(http: Any, traffic: Traffic, kind: str, index: int, log: SoakLog,
                started: float) -> None:  # fmt: skip
    """One request, recorded in ``log`` with its latency."""
    t0 = time.perf_counter()
    sent, ok, reason = await one_request(http, traffic, kind, index)
    t1 = time.perf_counter()
    log.samples.append(Sample(sent, t0 - started, t1 - t0, ok, "" if ok else reason))
    if ok:
        log.count_success(sent)


async def steady_load(http: Any, traffic: Traffic, rate: float, seconds: float, log: SoakLog,
                      started: float, first_index: int = 0) -> int:  # fmt: skip
    """Open loop: the ``n``-th request is sent at ``started + n / rate`` whatever the
    answers so far, kinds in :data:`MIX` order, pairs from ``first_index`` on, until
    ``seconds`` pass; then waits for all answers. Returns the next pair index."""
    pending: set[asyncio.Task[None]] = set()
    for n in itertools.count():
        due = started + n / rate
        if due - started >= seconds:
            break
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        index = first_index + n
        task = asyncio.create_task(timed(http, traffic, MIX[n % len(MIX)], index, log,
                                         started))  # fmt: skip
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return first_index + n


async def every(seconds: float, stop: asyncio.Event, action: Callable[[], Any]) -> None:
    """Await ``action()`` every ``seconds`` until ``stop`` is set (an action under way
    finishes first)."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
            return
        except TimeoutError:
            await action()


async def swap(http: Any, folder: Path, token: str, deploy: bool, started: float) -> dict[str, Any]:
    """One deploy of ``folder`` (``deploy``) or one rollback through the admin API."""
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    try:
        if deploy:
            response = await http.post("/admin/deploy", json={"model_uri": str(folder)},
                                       headers=headers, timeout=600)  # fmt: skip
        else:
            response = await http.post("/admin/rollback", headers=headers, timeout=600)
        status = response.status_code
    except Exception as error:  # noqa: BLE001 - recorded as a failed swap
        status = type(error).__name__
    return {
        "kind": "deploy" if deploy else "rollback",
        "status": status,
        "at": round(t0 - started, 1),
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ---- report -----------------------------------------------------------------------------
def percentile_ms(latencies: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile of ``latencies`` (seconds) in ms, None when there are none."""
    return round(float(np.percentile(np.asarray(latencies) * 1000.0, q)), 1) if latencies else None


def window_rows(samples: Sequence[Sample], row_seconds: float, seconds: float,
                rss: Sequence[float | None]) -> list[dict[str, Any]]:  # fmt: skip
    """One row per ``row_seconds`` of the run (by when each request was sent): requests,
    failures, p50/p95/p99 of the successful ones, requests per kind, server RSS at its end."""
    count = max(1, math.ceil(seconds / row_seconds - 1e-9))
    rows = []
    for n in range(count):
        inside = [s for s in samples if n * row_seconds <= s.sent < (n + 1) * row_seconds]
        ok = [s.seconds for s in inside if s.ok]
        rows.append({
            "row": n + 1,
            "start_s": round(n * row_seconds, 1),
            "requests": len(inside),
            "failures": len(inside) - len(ok),
            "p50_ms": percentile_ms(ok, 50),
            "p95_ms": percentile_ms(ok, 95),
            "p99_ms": percentile_ms(ok, 99),
            "by_kind": {k: sum(s.kind == k for s in inside) for k in KINDS},
            "rss_mb": rss[n] if n < len(rss) else None,
        })  # fmt: skip
    return rows


def format_row(row: dict[str, Any]) -> str:
    """A report row as one progress line."""
    return (
        f"soak row {row['row']} (from {row['start_s']:.0f} s): {row['requests']} requests, "
        f"{row['failures']} failed, p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
        f"p99 {row['p99_ms']} ms, RSS {row['rss_mb']} MiB"
    )


def judge(report: dict[str, Any], bench: BenchSettings) -> dict[str, Any]:
    """The goals as booleans, each beside its figures."""
    feedback = report["log_lines"]["feedback"]
    rss_start, rss_end = report["rss_mb"]["start"], report["rss_mb"]["end"]
    growth = (rss_end / rss_start - 1) if rss_start and rss_end else None
    first, last = report["rows"][0]["p99_ms"], report["rows"][-1]["p99_ms"]
    ratio = last / first if first and last else None
    failed = report["failures"] + report["swap_failures"] + report["ingest_failures"]
    return {
        "no_failures": {"ok": failed == 0, "failed": failed},
        "no_lost_lines": {
            "ok": feedback["written"] == feedback["ingested"] and feedback["accounted"],
            "acknowledged": feedback["written"],
            "ingested": feedback["ingested"],
        },
        "rss_growth": {
            "ok": growth is not None and growth <= bench.soak_max_rss_growth,
            "growth": None if growth is None else round(growth, 4),
            "max": bench.soak_max_rss_growth,
        },
        "p99_stable": {
            "ok": ratio is not None and ratio <= bench.soak_max_p99_ratio,
            "last_over_first": None if ratio is None else round(ratio, 3),
            "max": bench.soak_max_p99_ratio,
        },
    }


def line_accounting(written: int, ingested: dict[str, int]) -> dict[str, Any]:
    """Lines the endpoint wrote (for feedback: acknowledged with a 202 or the app's thanks;
    for queries: answered) against what ingestion made of them; ``accounted``: every
    ingested line is accepted, a duplicate, a conflict or quarantined."""
    parts = ("accepted", "duplicates", "conflicts", "quarantined")
    return {
        "written": written,
        "ingested": ingested["lines"],
        **{name: ingested[name] for name in parts},
        "accounted": sum(ingested[name] for name in parts) == ingested["lines"],
    }


# ---- the run ----------------------------------------------------------------------------
def labelled_pairs(settings: Settings) -> list[tuple[str, str, str]]:
    """(claim, evidence, gold label) of the training sets, shuffled: the feedback users
    send (training claims, so that the leakage guard does not set them aside)."""
    from citeops.tasks.data.multivers import read_splits

    examples = read_splits(settings.data_dir, settings.evaluate.datasets, "train", seed=1)
    if not examples:
        raise BenchError(f"no training pairs under {settings.data_dir}")
    return [(ex.claim, ex.evidence, LABELS[ex.label]) for ex in examples]


async def warm_up(http: Any, traffic: Traffic, folder: Path, token: str, log: SoakLog,
                  bench: BenchSettings) -> int:  # fmt: skip
    """Requests of every kind and one deploy + rollback (both slots then hold a model),
    then ``bench.soak_warmup_seconds`` of the soak's own traffic; counted only as log lines
    written (and in ``log.warmup``). Returns the next pair index.

    Raises:
        BenchError: a first request or the swaps failed (the endpoint is not usable).
    """
    started = time.perf_counter()
    load = await drive(traffic.base_url, traffic.predict_pairs[-WARMUP_REQUESTS:], 2,
                       requests=WARMUP_REQUESTS)  # fmt: skip
    log.queries_answered += len(load.latencies)
    warm = SoakLog()
    kinds = ["feedback"] * len(traffic.api_keys) + ["app"] * 2 * traffic.app_pool.qsize()
    for index, kind in enumerate(kinds):
        await timed(http, traffic, kind, index, warm, started)
    log.feedback_acknowledged += warm.feedback_acknowledged
    log.queries_answered += warm.queries_answered
    swaps = [await swap(http, folder, token, deploy, started) for deploy in (True, False)]
    failed = [s for s in warm.samples if not s.ok] + [s for s in swaps if s["status"] != 200]
    if load.failed or failed:
        raise BenchError(f"warm-up failed: {load.errors or ''} {failed[:3]}")
    steady = SoakLog()
    next_index = await steady_load(http, traffic, bench.soak_rate, bench.soak_warmup_seconds,
                                   steady, time.perf_counter(), len(kinds))  # fmt: skip
    log.feedback_acknowledged += steady.feedback_acknowledged
    log.queries_answered += steady.queries_answered
    log.warmup = {
        "seconds": bench.soak_warmup_seconds,
        "requests": len(steady.samples),
        "failures": sum(not sample.ok for sample in steady.samples),
    }
    return next_index


async def soak(traffic: Traffic, folder: Path, token: str, env: dict[str, str],
               server: ServerProcess, options: SoakOptions, bench: BenchSettings,
               progress: Progress) -> SoakLog:  # fmt: skip
    """Warm up, then drive the endpoint for ``bench.soak_minutes`` with swaps and ingests."""
    import httpx

    log = SoakLog()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=traffic.base_url, limits=limits,
                                 timeout=REQUEST_TIMEOUT_SECONDS) as http:  # fmt: skip
        progress(f"warm-up: first requests, a deploy and a rollback, then "
                 f"{bench.soak_warmup_seconds:g} s of traffic")  # fmt: skip
        next_index = await warm_up(http, traffic, folder, token, log, bench)
        log.rss_mb.append(server_rss_mb(server))
        progress(f"warm-up done: server RSS {log.rss_mb[0]} MiB; soaking for "
                 f"{bench.soak_minutes:g} min at {bench.soak_rate} requests/s")  # fmt: skip
        started = log.started = time.perf_counter()
        seconds = bench.soak_minutes * 60.0
        row_count = math.ceil(seconds / options.row_seconds - 1e-9)
        stop = asyncio.Event()
        deploy = itertools.cycle((True, False))

        async def swap_once() -> None:
            log.swaps.append(await swap(http, folder, token, next(deploy), started))

        async def ingest_once() -> None:
            row = await run_ingest(env, started)
            log.ingests.append(row)
            progress(f"ingest at {row['at']:.0f} s: {row.get('lines', row.get('error'))} lines "
                     f"in {row['seconds']} s")  # fmt: skip

        async def report_rows() -> None:
            rows = 0

            async def one_row() -> None:
                nonlocal rows
                if rows >= row_count:  # answers still coming in after the last row
                    return
                log.rss_mb.append(server_rss_mb(server))
                row = window_rows(log.samples, options.row_seconds, seconds, log.rss_mb[1:])
                progress(format_row(row[rows]))
                rows += 1

            await every(options.row_seconds, stop, one_row)

        side = [
            asyncio.create_task(every(bench.soak_swap_every_seconds, stop, swap_once)),
            asyncio.create_task(every(bench.soak_ingest_every_seconds, stop, ingest_once)),
            asyncio.create_task(report_rows()),
        ]
        await steady_load(http, traffic, bench.soak_rate, seconds, log, started, next_index)
        stop.set()
        await asyncio.gather(*side)
        rows_done = len(log.rss_mb) - 1
        if rows_done < row_count:
            log.rss_mb.append(server_rss_mb(server))  # the last, partial row
            progress(format_row(window_rows(log.samples, options.row_seconds, seconds,
                                            log.rss_mb[1:])[rows_done]))  # fmt: skip
    return log


def run_soak_bench(
    settings: Settings, options: SoakOptions, bench: BenchSettings, progress: Progress
) -> dict[str, Any]:
    """Start the endpoint, soak it (:func:`soak`), stop it, ingest the rest; the report.

    Raises:
        BenchError: the server did not start, the data is missing, or warm-up failed.
    """
    pairs = bench_pairs(settings)
    labelled = labelled_pairs(settings)
    progress("preparing the model folder")
    folder = bench_model_folder(settings, options.model_uri)
    workdir = Path(tempfile.mkdtemp(prefix="citeops-bench-soak-"))
    home = workdir / "home"
    token = secrets.token_hex(16)
    api_keys = feedback_clients(bench.soak_rate)
    env = soak_env(settings, home, token, api_keys)
    port = free_port()
    progress(f"starting citeops serve on a fresh home ({home})")
    serve_cmd = [sys.executable, "-c", CLI_ENTRY, "serve", "--model-uri", str(folder),
                 "--port", str(port)]  # fmt: skip
    server = start_server(serve_cmd, env, port, workdir, "/ready")
    executor = ThreadPoolExecutor(options.app_sessions, thread_name_prefix="soak-app")
    sessions: list[AppSession] = []
    try:
        for _ in range(options.app_sessions):
            sessions.append(AppSession(open_app_session(server.base_url)))

        async def main() -> SoakLog:
            pool: asyncio.Queue[Any] = asyncio.Queue()
            for session in sessions:
                pool.put_nowait(session)
            traffic = Traffic(server.base_url, pairs, labelled, list(api_keys.values()), pool,
                              executor)  # fmt: skip
            return await soak(traffic, folder, token, env, server, options, bench, progress)

        log = asyncio.run(main())
        rss_end = server_rss_mb(server)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        for session in sessions:
            session.client.close()
        server.stop()
    progress("server stopped; the last ingest")
    final = asyncio.run(run_ingest(env, log.started))
    ingested = ingested_by_kind(home)
    return soak_report(log, options, ingested, final, (rss_end, folder, settings), bench)


def soak_report(log: SoakLog, options: SoakOptions, ingested: dict[str, dict[str, int]],
                final: dict[str, Any], context: tuple[float | None, Path, Settings],
                bench: BenchSettings) -> dict[str, Any]:  # fmt: skip
    """The JSON document: figures, per-row table and the goals (:func:`judge`)."""
    rss_end, folder, settings = context
    seconds = bench.soak_minutes * 60.0
    ok = [s.seconds for s in log.samples if s.ok]
    errors: dict[str, int] = {}
    for s in log.samples:
        if not s.ok:
            errors[f"{s.kind}:{s.reason}"] = errors.get(f"{s.kind}:{s.reason}", 0) + 1
    swaps_done = [s for s in log.swaps if s["status"] == 200]
    ingests = [*log.ingests, {**final, "final": True}]
    report: dict[str, Any] = {
        "model": str(folder) if options.model_uri is None else options.model_uri,
        "runtime": settings.serve.runtime,
        "precision": settings.serve.precision,
        "minutes": bench.soak_minutes,
        "rate": bench.soak_rate,
        "swap_every_s": bench.soak_swap_every_seconds,
        "ingest_every_s": bench.soak_ingest_every_seconds,
        "row_seconds": options.row_seconds,
        "cpu_count": os.cpu_count(),
        "warmup": log.warmup,
        "requests": len(log.samples),
        "failures": len(log.samples) - len(ok),
        "errors": errors,
        "by_kind": {k: sum(s.kind == k for s in log.samples) for k in KINDS},
        "p50_ms": percentile_ms(ok, 50),
        "p95_ms": percentile_ms(ok, 95),
        "p99_ms": percentile_ms(ok, 99),
        "swaps": len(swaps_done),
        "swap_failures": len(log.swaps) - len(swaps_done),
        "swap_seconds_max": max((s["seconds"] for s in log.swaps), default=None),
        "ingests": ingests,
        "ingest_failures": sum(row["rc"] != 0 for row in ingests),
        "rows": window_rows(log.samples, options.row_seconds, seconds, log.rss_mb[1:]),
        "rss_mb": {"start": log.rss_mb[0] if log.rss_mb else None, "end": rss_end},
        "log_lines": {
            "feedback": line_accounting(log.feedback_acknowledged, ingested["feedback"]),
            "queries": line_accounting(log.queries_answered, ingested["queries"]),
        },
    }
    report["goals"] = judge(report, bench)
    report["all_goals_met"] = all(goal["ok"] for goal in report["goals"].values())
    return report


def format_soak(report: dict[str, Any]) -> str:
    """The report for people: the rows, then each goal with its figures."""
    lines = [
        f"soak {report['minutes']:g} min at {report['rate']} requests/s "
        f"({report['runtime']} {report['precision']}): {report['requests']} requests, "
        f"{report['failures']} failed, {report['swaps']} swaps, "
        f"{len(report['ingests'])} ingests",
        *(format_row(row) for row in report["rows"]),
    ]
    feedback = report["log_lines"]["feedback"]
    lines.append(
        f"feedback lines: {feedback['written']} acknowledged, {feedback['ingested']} "
        f"ingested ({feedback['accepted']} accepted, {feedback['duplicates']} duplicates, "
        f"{feedback['conflicts']} conflicts, {feedback['quarantined']} quarantined)"
    )
    for name, goal in report["goals"].items():
        figures = ", ".join(f"{k} {v}" for k, v in goal.items() if k != "ok")
        lines.append(f"{'met    ' if goal['ok'] else 'NOT met'} {name}: {figures}")
    return "\n".join(lines)
