"""`citeops bench serve`: our server against an AI4citations-style baseline, over HTTP.

Both servers run as separate processes on the same model folder and the same test-set
pairs; N concurrent closed-loop clients (asyncio + httpx) drive one server at a time for
a fixed time per concurrency level, alternating between the two at each level.
Agreement compares the labels our server gave with the baseline's (fp32, per request)
on the pairs both scored. With ``batch_tokens`` a sweep then runs, per runtime, one
server per token budget (``serve.batching.<runtime>.max_batch_tokens``), alternating
between them at ``sweep_clients`` (the table the per-runtime defaults are chosen from).
The swap test then drives our server with a deploy or rollback every ``swap_every``
seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.errors import CiteopsError
from citeops.tasks.stack.processes import free_port

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

Progress = Callable[[str], None]


class BenchError(CiteopsError):
    """The benchmark could not run (a server did not start, no data)."""


@dataclass(frozen=True)
class BenchOptions:
    model_uri: str | None = None
    clients: tuple[int, ...] = (1, 4, 16, 32)
    seconds: float = 12.0
    swap_requests: int = 5000
    swap_clients: int = 16
    swap_every: float = 1.0
    warmup_requests: int = 16
    slice_seconds: float = 3.0
    tuned_baseline: bool = False  # the baseline gets serve.omp_wait_policy too
    agreement_pairs: int = 0  # in-process precision-vs-fp32 check on this many test pairs
    # one more citeops server per runtime, measured in the same run (empty: none)
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    # token budgets swept per runtime (empty: no sweep); which runtimes (None: those of
    # ``runtimes``, else serve.runtime) and at how many clients
    batch_tokens: tuple[int, ...] = ()
    sweep_runtimes: tuple[str, ...] | None = None
    sweep_clients: int = 16
    # the shadow phase's cost: a server mirroring every request to a shadow challenger
    # against one that does not, at this many clients (0: not run), mirroring this share
    # of requests (None: promote.online_share, the online phase's default)
    shadow_clients: int = 0
    shadow_share: float | None = None
    # a second workload where each evidence is checked against this many claims in a row
    # (0: not run): the baseline, citeops serve without and with its evidence cache
    evidence_reuse: int = 0
    reuse_clients: int = 16


@dataclass
class LoadResult:
    """One load run: per-request outcomes and the labels seen per pair index."""

    clients: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    spans: list[tuple[float, float]] = field(default_factory=list)
    next_index: int = 0

    def absorb(self, other: LoadResult) -> None:
        """Add another run's outcomes (time, latencies, failures, first labels seen)."""
        self.elapsed += other.elapsed
        self.latencies.extend(other.latencies)
        self.failed += other.failed
        for reason, count in other.errors.items():
            self.errors[reason] = self.errors.get(reason, 0) + count
        for index, label in other.labels.items():
            self.labels.setdefault(index, label)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000.0
        ok = len(self.latencies)
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if ok else (lambda q: None)
        return {
            "clients": self.clients,
            "requests": ok + self.failed,
            "failed": self.failed,
            "throughput": round(ok / self.elapsed, 2) if self.elapsed else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "max_ms": round(float(lat.max()), 1) if ok else None,
        }


def bench_model_folder(settings: Settings, model_uri: str | None) -> Path:
    """A ``save_pretrained`` folder both servers load: the given model (downloaded if it
    is an MLflow URI), or MiniLM with an untrained 3-way head saved under ``home/bench``
    with the ``citeops.json`` the default recipe gives a trained model (its input length
    and evidence selection), so that both servers prepare inputs as for the default model."""
    from citeops.tasks.classifier.artifact import find_hf_dir

    if model_uri is None:
        inputs = f"{settings.train.max_length}-{settings.model.evidence_selection.method}"
        folder = settings.home / "bench" / f"minilm-untrained-{settings.model.head}-{inputs}"
        if not (folder / "config.json").is_file():
            from citeops.tasks.classifier.artifact import save_hf_folder
            from citeops.tasks.classifier.base import load_base
            from citeops.tasks.train.fit import recipe_meta

            base = settings.model.model_copy(update={"base_model": "minilm"})
            model, tokenizer = load_base(base)
            meta = recipe_meta(settings.model_copy(update={"model": base}))
            save_hf_folder(model, tokenizer, folder, meta)
        return folder
    if "://" not in model_uri and not model_uri.startswith(("models:", "runs:")):
        return find_hf_dir(Path(model_uri).expanduser())
    from citeops.tasks.inference.loading import download_model

    dst = Path(tempfile.mkdtemp(prefix="citeops-bench-model-"))
    try:
        root, _ = download_model(model_uri, settings, dst)
    except Exception as error:  # noqa: BLE001 - mlflow raises several types
        raise BenchError(f"{model_uri}: cannot be downloaded ({error})") from None
    return find_hf_dir(root)


def bench_pairs(settings: Settings) -> list[tuple[str, str]]:
    """(claim, evidence) pairs of the test sets, in a fixed shuffled order."""
    from citeops.tasks.data.multivers import read_splits

    examples = read_splits(settings.data_dir, settings.evaluate.datasets, "test", seed=0)
    if not examples:
        raise BenchError(f"no test pairs under {settings.data_dir}")
    return [(ex.claim, ex.evidence) for ex in examples]


# ---- processes ---------------------------------------------------------------------------
@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(
    cmd: Sequence[str], env: dict[str, str], port: int, workdir: Path, ready: str
) -> ServerProcess:
    """Start a server process and wait until ``ready`` answers 200 (up to 3 minutes)."""
    import httpx

    log_path = workdir / f"server-{port}.log"
    handle = log_path.open("wb")
    proc = subprocess.Popen(list(cmd), env=env, stdout=handle, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    server = ServerProcess(proc, base, log_path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(base + ready, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    tail = log_path.read_text(errors="replace")[-1500:]
    raise BenchError(f"server {' '.join(cmd[:4])} did not become ready:\n{tail}")


# ---- load --------------------------------------------------------------------------------
async def drive(
    base_url: str,
    pairs: Sequence[tuple[str, str]],
    clients: int,
    seconds: float | None = None,
    requests: int | None = None,
    during: Callable[[Any], Any] | None = None,
    first_index: int = 0,
) -> LoadResult:
    """Closed-loop load: ``clients`` tasks each send one request after the other, pair
    indices taken in order from ``first_index`` (wrapping around), until ``seconds`` pass
    or ``requests`` are sent. ``during(client, start)`` runs alongside (the swap test) and
    is cancelled at the end."""
    import httpx

    result = LoadResult(clients)
    counter = iter(range(first_index, 10**12))
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as http:
        start = time.perf_counter()
        deadline = start + seconds if seconds else None

        async def client() -> None:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                index = next(counter)
                if requests is not None and index - first_index >= requests:
                    return
                claim, evidence = pairs[index % len(pairs)]
                t0 = time.perf_counter()
                try:
                    response = await http.post(
                        "/predict", json={"claim": claim, "evidence": evidence}
                    )
                    ok = response.status_code == 200
                    reason = str(response.status_code)
                except httpx.HTTPError as error:
                    ok, reason = False, type(error).__name__
                t1 = time.perf_counter()
                result.spans.append((t0 - start, t1 - start))
                if ok:
                    result.latencies.append(t1 - t0)
                    result.labels.setdefault(index % len(pairs), response.json()["label"])
                else:
                    result.failed += 1
                    result.errors[reason] = result.errors.get(reason, 0) + 1

        side = asyncio.create_task(during(http, start)) if during else None
        await asyncio.gather(*(client() for _ in range(clients)))
        result.elapsed = time.perf_counter() - start
        result.next_index = next(counter)
        if side is not None:
            side.cancel()
            try:
                await side
            except asyncio.CancelledError:
                pass
    return result


def warm_up(base_url: str, pairs: Sequence[tuple[str, str]], n: int) -> None:
    """A few requests, not counted, so the first measured ones do not pay start-up costs."""
    asyncio.run(drive(base_url, pairs[-n:], clients=min(4, n), requests=n))


def run_levels(
    servers: dict[str, str],
    pairs: Sequence[tuple[str, str]],
    options: BenchOptions,
    progress: Progress,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[int, str]]]:
    """Each concurrency level on each server in turn, in slices of about
    ``slice_seconds`` that alternate between the servers, so that load from elsewhere on a
    shared machine falls on every side alike. The order rotates every slice (with three
    servers: a b c, b c a, c a b, ...), so that no server always runs right after the same
    other one (a server's position once halved its pairs/s: BENCHMARKS.md ## serve)."""
    levels: dict[str, dict[str, Any]] = {name: {} for name in servers}
    labels: dict[str, dict[int, str]] = {name: {} for name in servers}
    next_index = dict.fromkeys(servers, 0)  # levels continue through the pairs
    for url in servers.values():
        warm_up(url, pairs, options.warmup_requests)
    slices = max(1, round(options.seconds / options.slice_seconds))
    for clients in options.clients:
        totals = {name: LoadResult(clients) for name in servers}
        names = list(servers)
        for index in range(slices):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                url = servers[name]
                part = asyncio.run(
                    drive(
                        url, pairs, clients, options.seconds / slices, None, None, next_index[name]
                    )
                )
                next_index[name] = part.next_index
                totals[name].absorb(part)
        for name, total in totals.items():
            levels[name][str(clients)] = row = total.summary()
            for index, label in total.labels.items():
                labels[name].setdefault(index, label)
            progress(
                f"{name:8s} clients={clients:2d}  {row['throughput']:6.1f} pairs/s  "
                f"p50={row['p50_ms']} ms  p95={row['p95_ms']} ms  failed={row['failed']}"
            )
    return levels, labels


def swap_test(
    base_url: str,
    pairs: Sequence[tuple[str, str]],
    model_folder: Path,
    token: str,
    options: BenchOptions,
) -> dict[str, Any]:
    """Drive the server while deploys and rollbacks alternate every ``swap_every`` s."""
    swaps: list[dict[str, Any]] = []

    async def swapper(http: Any, start: float) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        deploy = True
        while True:
            await asyncio.sleep(options.swap_every)
            t0 = time.perf_counter()
            if deploy:
                response = await http.post(
                    "/admin/deploy", json={"model_uri": str(model_folder)}, headers=headers
                )
            else:
                response = await http.post("/admin/rollback", headers=headers)
            t1 = time.perf_counter()
            swaps.append(
                {
                    "kind": "deploy" if deploy else "rollback",
                    "status": response.status_code,
                    "start": t0 - start,
                    "end": t1 - start,
                }
            )
            deploy = not deploy

    result = asyncio.run(
        drive(base_url, pairs, options.swap_clients, requests=options.swap_requests, during=swapper)
    )
    # a request "during a swap" overlaps the moment the live pointer switched (end of call)
    switch_times = [s["end"] for s in swaps if s["status"] == 200]
    during = [
        (end - start) for start, end in result.spans if any(start <= t <= end for t in switch_times)
    ]
    summary = result.summary()
    return {
        **summary,
        "errors": result.errors,
        "swaps": len(switch_times),
        "swap_calls_failed": sum(s["status"] != 200 for s in swaps),
        "deploy_seconds_mean": round(
            float(np.mean([s["end"] - s["start"] for s in swaps if s["kind"] == "deploy"] or [0])),
            2,
        ),
        "requests_across_a_swap": len(during),
        "longest_across_swap_ms": round(max(during) * 1000.0, 1) if during else None,
    }


def precision_agreement(
    folder: Path, precision: str, pairs: Sequence[tuple[str, str]], progress: Progress
) -> dict[str, Any]:
    """Labels of ``precision`` against fp32 on ``pairs``, in this process (one pair per
    forward pass, as the serving path does for long pairs)."""
    from citeops.tasks.inference.predictor import ClaimVerifier

    reference = ClaimVerifier.from_dir(folder, "fp32")
    candidate = ClaimVerifier.from_dir(folder, precision)  # type: ignore[arg-type]
    same = 0
    started = time.perf_counter()
    for i, (claim, evidence) in enumerate(pairs, start=1):
        ids = reference.encode_pair(claim, evidence)
        want = int(reference.predict_encoded([ids]).argmax())
        same += int(candidate.predict_encoded([ids]).argmax()) == want
        if i % 200 == 0:
            progress(
                f"agreement {precision} vs fp32: {same}/{i} "
                f"after {time.perf_counter() - started:.0f} s"
            )
    return {"pairs": len(pairs), "agreement": round(same / len(pairs), 4) if pairs else None}


def exported_folder(folder: Path, settings: Settings, workdir: Path) -> Path:
    """``folder`` if it carries a parity-checked ONNX export, else a copy under ``workdir``
    exported now (as registration does), so that every runtime can serve it."""
    import json
    import shutil

    from citeops.tasks.inference.engines import ONNX_FILE
    from citeops.tasks.registry.export import export_with_parity

    meta_path = folder / "citeops.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if (meta.get("onnx") or {}).get("exportable") and (folder / ONNX_FILE).is_file():
        return folder
    copy = Path(shutil.copytree(folder, workdir / "model"))
    export_with_parity(copy, settings)
    return copy


def process_rss_mb(server: ServerProcess) -> float | None:
    """Resident memory of a server process, MiB (None once it has exited)."""
    import psutil

    try:
        return round(psutil.Process(server.proc.pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def served_runtime(base_url: str) -> dict[str, Any]:
    """The live slot's runtime, precision, device and batching budget, as ``/version``
    reports them."""
    import httpx

    live = httpx.get(base_url + "/version", timeout=10).json().get("live", {})
    keys = ("runtime", "precision", "device", "batching")
    return {key: live.get(key) for key in keys}


def label_agreement(reference: dict[int, str], labels: dict[int, str]) -> tuple[float | None, int]:
    """Share of the pairs both scored on which the labels agree, and how many pairs."""
    common = sorted(set(reference) & set(labels))
    agree = sum(reference[i] == labels[i] for i in common)
    return (round(agree / len(common), 4) if common else None), len(common)


def runtime_table(
    levels: dict[str, dict[str, Any]],
    labels: dict[str, dict[int, str]],
    servers: dict[str, ServerProcess],
) -> dict[str, dict[str, Any]]:
    """Per runtime server: what it ran, its levels, agreement with the fp32 baseline, RSS."""
    table = {}
    for name, server in servers.items():
        agreement, common = label_agreement(labels["baseline"], labels[name])
        table[name.removeprefix("runtime:")] = {
            **served_runtime(server.base_url),
            "levels": levels[name],
            "agreement": agreement,
            "agreement_pairs": common,
            "rss_mb": process_rss_mb(server),
        }
    return table


def batch_token_env(env: dict[str, str], runtime: str, tokens: int) -> dict[str, str]:
    """A sweep server's environment: ``runtime``, with ``tokens`` as the token budget of
    every runtime (so that it holds whichever one ``auto`` picks)."""
    from citeops.tasks.inference.engines import RUNTIMES

    budgets = {
        f"CITEOPS_SERVE__BATCHING__{name.upper()}__MAX_BATCH_TOKENS": str(tokens)
        for name in RUNTIMES
    }
    return {**env, "CITEOPS_SERVE__RUNTIME": runtime, **budgets}


def token_sweep(
    serve_cmd: Sequence[str],
    env: dict[str, str],
    workdir: Path,
    pairs: Sequence[tuple[str, str]],
    options: BenchOptions,
    progress: Progress,
) -> dict[str, dict[str, Any]]:
    """``{runtime: {tokens: load summary + what /version said it served}}``: per runtime,
    one server per budget in ``options.batch_tokens``, driven in alternating slices at
    ``options.sweep_clients`` (:func:`run_levels`), then stopped."""
    sweep = dataclasses.replace(options, clients=(options.sweep_clients,))
    key = str(options.sweep_clients)
    table: dict[str, dict[str, Any]] = {}
    for runtime in options.sweep_runtimes or ():
        servers: dict[str, ServerProcess] = {}
        try:
            for tokens in options.batch_tokens:
                port = free_port()
                progress(f"token sweep: starting {runtime} with max_batch_tokens={tokens}")
                cmd = [*serve_cmd, "--port", str(port)]
                server_env = batch_token_env(env, runtime, tokens)
                servers[f"{runtime}@{tokens}"] = start_server(
                    cmd, server_env, port, workdir, "/ready"
                )
            urls = {name: server.base_url for name, server in servers.items()}
            levels, _ = run_levels(urls, pairs, sweep, progress)
            table[runtime] = {
                name.split("@")[1]: {**served_runtime(server.base_url), **levels[name][key]}
                for name, server in servers.items()
            }
        finally:
            for server in servers.values():
                server.stop()
    return table


def shadow_overhead(
    serve_cmd: list[str],
    env: dict[str, str],
    workdir: Path,
    folder: Path,
    pairs: Sequence[tuple[str, str]],
    token: str,
    options: BenchOptions,
    progress: Progress,
) -> dict[str, Any]:
    """p95 of a server mirroring ``share`` of its requests to a shadow challenger (the same
    model in the idle slot, ``/admin/ab/start`` mode shadow) against the same server
    without, at ``options.shadow_clients``, with the shadow copies scored and dropped.
    ``share``: ``options.shadow_share`` (None: 1).

    The two run one after the other, each alone on the machine: in alternating slices the
    shadow server's backlog of copies would be scored during the other server's slice and
    charged to it."""
    share = options.shadow_share if options.shadow_share is not None else 1.0
    clients = options.shadow_clients
    run = dataclasses.replace(options, clients=(clients,))
    levels: dict[str, dict[str, Any]] = {}
    copies: dict[str, Any] = {}
    for name in ("serve", "shadow"):
        port = free_port()
        progress(f"shadow overhead: starting citeops serve ({name})")
        server = start_server([*serve_cmd, "--port", str(port)], env, port, workdir, "/ready")
        try:
            if name == "shadow":
                start_shadow(server.base_url, folder, share, token)
            measured, _ = run_levels({name: server.base_url}, pairs, run, progress)
            levels[name] = measured[name][str(clients)]
            if name == "shadow":
                copies = shadow_copies(server.base_url, token)
        finally:
            server.stop()
    plain, mirrored = levels["serve"], levels["shadow"]
    overhead = mirrored["p95_ms"] / plain["p95_ms"] - 1 if plain["p95_ms"] else None
    return {
        "clients": clients,
        "share": share,
        "serve": plain,
        "shadow": mirrored,
        "p95_overhead": None if overhead is None else round(overhead, 3),
        "copies": copies,
    }


def start_shadow(base_url: str, folder: Path, share: float, token: str) -> None:
    """Put ``folder`` in the idle slot as a shadow challenger of ``share`` of requests."""
    import httpx

    body = {"model_uri": str(folder), "share": share, "mode": "shadow"}
    started = httpx.post(f"{base_url}/admin/ab/start", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=600)  # fmt: skip
    if started.status_code != 200:
        raise BenchError(f"the shadow experiment did not start: {started.text[:200]}")


def shadow_copies(base_url: str, token: str) -> dict[str, Any]:
    """The shadow copies' counts (scored, dropped, queued) of the running experiment."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{base_url}/admin/ab", headers=headers, timeout=30).json().get("shadow", {})


def reuse_pairs(
    pairs: Sequence[tuple[str, str]], reuse: int, spacing: int = 1
) -> list[tuple[str, str]]:
    """Each distinct evidence of ``pairs`` checked against ``reuse`` claims (its own pair's
    claim first, then claims of other pairs), the same evidence coming back every
    ``spacing`` pairs: AI4citations users check several claims against one cited paper,
    each user one claim after the other (with ``spacing`` users at a time, a repeat
    arrives with the next round of requests, not in the same batch)."""
    evidences = list(dict.fromkeys(evidence for _, evidence in pairs))
    claims = [claim for claim, _ in pairs]
    out = []
    for start in range(0, len(evidences), spacing):
        group = evidences[start : start + spacing]
        for k in range(reuse):
            for offset, evidence in enumerate(group):
                i = start + offset
                out.append((claims[(i * reuse + k) % len(claims)], evidence))
    return out


def evidence_cache_stats(base_url: str) -> dict[str, float]:
    """The live slot's ``citeops_evidence_cache`` figures from ``/metrics`` (summed over
    slots: one model is loaded here)."""
    import httpx

    stats: dict[str, float] = {}
    for line in httpx.get(f"{base_url}/metrics", timeout=30).text.splitlines():
        if line.startswith("citeops_evidence_cache{"):
            labels, value = line.rsplit(" ", 1)
            stat = labels.split('stat="', 1)[1].split('"', 1)[0]
            stats[stat] = stats.get(stat, 0.0) + float(value)
    return stats


def reuse_workload(
    serve_cmd: Sequence[str],
    env: dict[str, str],
    workdir: Path,
    urls: dict[str, str],
    pairs: Sequence[tuple[str, str]],
    options: BenchOptions,
    progress: Progress,
    cache_mb: float,
) -> dict[str, Any]:
    """The evidence-reuse workload at ``options.reuse_clients`` (each client, in effect,
    checks ``options.evidence_reuse`` claims against one evidence, :func:`reuse_pairs`):
    the baseline and the
    main citeops server (``urls``, both without any evidence cache) against one more
    citeops server with its cache (``serve.evidence_cache_mb``, else 64 MB), in
    alternating slices; the cache's share of the gain is that server's pairs/s over the
    one without."""
    workload = reuse_pairs(pairs, options.evidence_reuse, spacing=options.reuse_clients)
    port = free_port()
    progress(f"evidence reuse x{options.evidence_reuse}: starting citeops serve with its cache")
    cached_env = {**env, CACHE_ENV: str(cache_mb)}
    cached = start_server([*serve_cmd, "--port", str(port)], cached_env, port, workdir, "/ready")
    try:
        servers = {"baseline": urls["baseline"], "serve": urls["serve"]}
        servers["serve_cached"] = cached.base_url
        run = dataclasses.replace(options, clients=(options.reuse_clients,))
        levels, _ = run_levels(servers, workload, run, progress)
        stats = evidence_cache_stats(cached.base_url)
        cached_runtime = served_runtime(cached.base_url)
    finally:
        cached.stop()
    key = str(options.reuse_clients)
    rows = {name: levels[name][key] for name in servers}
    base = rows["baseline"]["throughput"]
    plain, with_cache = rows["serve"]["throughput"], rows["serve_cached"]["throughput"]
    lookups = stats.get("hits", 0.0) + stats.get("misses", 0.0)
    return {
        "reuse": options.evidence_reuse,
        "clients": options.reuse_clients,
        "pairs": len(workload),
        **rows,
        "ratio": round(with_cache / base, 2) if base else None,
        "ratio_without_cache": round(plain / base, 2) if base else None,
        "cache_gain": round(with_cache / plain, 2) if plain else None,
        "cached_runtime": cached_runtime,
        "cache": {
            **stats,
            "hit_rate": round(stats.get("hits", 0.0) / lookups, 3) if lookups else None,
        },
    }


CACHE_ENV = "CITEOPS_SERVE__EVIDENCE_CACHE_MB"
REUSE_CACHE_MB = 64.0  # the reuse workload's cached server when serve.evidence_cache_mb is 0


def reuse_cache_mb(settings: Settings) -> float:
    """The cached server's cache size: ``serve.evidence_cache_mb`` as configured, else
    :data:`REUSE_CACHE_MB`."""
    configured = settings.serve.evidence_cache_mb
    return configured if configured > 0 else REUSE_CACHE_MB


def run_serve_bench(
    settings: Settings, options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """Run baseline and citeops servers on the same pairs; return the report dict.

    ``serve`` runs ``serve.runtime`` (default auto); with ``options.runtimes`` one more
    citeops server per runtime runs in the same alternation, for the per-runtime table
    (``runtimes``: pairs/s and latency per level, agreement with the fp32 baseline, RSS).
    With ``options.batch_tokens``, ``batch_token_sweep`` holds the token-budget sweep
    (:func:`token_sweep`).
    """
    pairs = bench_pairs(settings)
    progress(f"{len(pairs)} test pairs; preparing the model folder")
    folder = bench_model_folder(settings, options.model_uri)
    full_agreement = None
    if options.agreement_pairs:
        subset = pairs[: options.agreement_pairs]
        full_agreement = precision_agreement(folder, settings.serve.precision, subset, progress)
    workdir = Path(tempfile.mkdtemp(prefix="citeops-bench-serve-"))
    sweep_runtimes = options.sweep_runtimes or options.runtimes or (settings.serve.runtime,)
    swept = sweep_runtimes if options.batch_tokens else ()
    if {*options.runtimes, *swept, settings.serve.runtime} != {"torch"}:
        progress("ONNX export and parity check of the model (as at registration)")
        folder = exported_folder(folder, settings, workdir)
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "CITEOPS_HOME": str(workdir / "home"),
        "CITEOPS_ADMIN_TOKEN": token,
        "CITEOPS_SERVE__PRECISION": settings.serve.precision,
        "CITEOPS_SERVE__RUNTIME": settings.serve.runtime,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # the main workload wraps around the test pairs: no cache, so that repeats do not
        # count (the reuse workload measures the cache)
        CACHE_ENV: "0",
    }
    env.pop("CITEOPS_LOG_ROOT", None)
    env.pop("OMP_WAIT_POLICY", None)  # each side gets its own below
    policy = settings.serve.omp_wait_policy
    baseline_env = dict(env)
    if options.tuned_baseline and policy != "inherit":
        baseline_env["OMP_WAIT_POLICY"] = policy.upper()
    report: dict[str, Any] = {
        "model": str(folder) if options.model_uri is None else options.model_uri,
        "precision": settings.serve.precision,
        "pairs": len(pairs),
        "seconds_per_level": options.seconds,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": {
            "serve": policy,
            "baseline": baseline_env.get("OMP_WAIT_POLICY", "default").lower(),
        },
    }

    servers: list[ServerProcess] = []
    try:
        port = free_port()
        progress("starting the baseline: transformers pipeline, fp32, one request at a time")
        baseline_cmd = [
            sys.executable,
            "-m",
            "citeops.benchmarks.serve_baseline",
            "--model",
            str(folder),
        ]
        servers.append(
            start_server(
                [*baseline_cmd, "--port", str(port)], baseline_env, port, workdir, "/health"
            )
        )
        port = free_port()
        progress(f"starting citeops serve: micro-batching, {settings.serve.precision}")
        entry = "import sys; from citeops.flows.cli import main; main(sys.argv[1:])"
        serve_cmd = [sys.executable, "-c", entry, "serve", "--model-uri", str(folder)]
        servers.append(
            start_server([*serve_cmd, "--port", str(port)], env, port, workdir, "/ready")
        )
        urls = {"baseline": servers[0].base_url, "serve": servers[1].base_url}
        report["runtime"] = served_runtime(urls["serve"])
        extra: dict[str, ServerProcess] = {}
        for runtime in options.runtimes:
            port = free_port()
            progress(f"starting citeops serve on {runtime}")
            runtime_env = {**env, "CITEOPS_SERVE__RUNTIME": runtime}
            cmd = [*serve_cmd, "--port", str(port)]
            extra[f"runtime:{runtime}"] = start_server(cmd, runtime_env, port, workdir, "/ready")
        servers.extend(extra.values())
        urls |= {name: server.base_url for name, server in extra.items()}
        levels, labels = run_levels(urls, pairs, options, progress)
        report["baseline"], report["serve"] = levels["baseline"], levels["serve"]
        report["runtimes"] = runtime_table(levels, labels, extra)
        for server in extra.values():
            servers.remove(server)
            server.stop()
        if options.batch_tokens:
            sweep = dataclasses.replace(options, sweep_runtimes=sweep_runtimes)
            report["batch_token_sweep"] = {
                "clients": options.sweep_clients,
                "seconds": options.seconds,
                "runtimes": token_sweep(serve_cmd, env, workdir, pairs, sweep, progress),
            }
        if options.evidence_reuse:
            report["evidence_reuse"] = reuse_workload(
                serve_cmd, env, workdir, urls, pairs, options, progress, reuse_cache_mb(settings)
            )
        if options.shadow_clients:
            if options.shadow_share is None:  # the online phase's default share
                options = dataclasses.replace(options, shadow_share=settings.promote.online_share)
            report["shadow"] = shadow_overhead(serve_cmd, env, workdir, folder, pairs, token,
                                               options, progress)  # fmt: skip
        if options.swap_requests:
            servers.pop(0).stop()
            progress(
                f"swap test: {options.swap_requests} requests, {options.swap_clients} clients, "
                f"deploy/rollback every {options.swap_every} s"
            )
            report["swap"] = swap_test(urls["serve"], pairs, folder, token, options)
            report["rss_mb_both_slots"] = process_rss_mb(servers[0])
    finally:
        for server in servers:
            server.stop()

    agreement, common = label_agreement(labels["baseline"], labels["serve"])
    report["agreement_pairs"] = common
    report["agreement"] = agreement
    if full_agreement is not None:
        report["agreement_in_process"] = full_agreement
    key = "16" if "16" in report["serve"] else str(max(options.clients))
    base_tp = report["baseline"][key]["throughput"]
    report["ratio_clients"] = int(key)
    report["ratio"] = round(report["serve"][key]["throughput"] / base_tp, 2) if base_tp else None
    report["p95_ms"] = report["serve"][key]["p95_ms"]
    report["swap_failed"] = report["swap"]["failed"] if "swap" in report else None
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']}  precision {report['precision']}  {report['pairs']} test pairs",
        f"{'server':9s} {'clients':>7s} {'pairs/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'p99 ms':>8s} {'failed':>6s}",
    ]
    for name in ("baseline", "serve"):
        for clients, row in report[name].items():
            lines.append(
                f"{name:9s} {clients:>7s} {row['throughput']:8.1f} {row['p50_ms']!s:>8s} "
                f"{row['p95_ms']!s:>8s} {row['p99_ms']!s:>8s} {row['failed']:6d}"
            )
    ratio = f"ratio at {report['ratio_clients']} clients: {report['ratio']}x"
    agree = f"agreement {report['agreement']} on {report['agreement_pairs']} pairs"
    lines.append(f"{ratio}  p95 {report['p95_ms']} ms  {agree}")
    for name, row in report.get("runtimes", {}).items():
        levels = "  ".join(
            f"{c}:{r['throughput']:.1f}/s p95 {r['p95_ms']} ms" for c, r in row["levels"].items()
        )
        lines.append(
            f"runtime {name} ({row['runtime']} {row['precision']}): {levels}  "
            f"agreement {row['agreement']}  RSS {row['rss_mb']} MiB"
        )
    lines.extend(format_sweep(report.get("batch_token_sweep")))
    if "swap" in report:
        swap = report["swap"]
        counts = f"{swap['requests']} requests, {swap['swaps']} swaps, failed {swap['failed']}"
        speed = f"{swap['throughput']} pairs/s, p95 {swap['p95_ms']} ms"
        longest = f"longest across a swap {swap['longest_across_swap_ms']} ms"
        lines.append(f"swap test: {counts}, {speed}, {longest} (overall max {swap['max_ms']} ms)")
    if "evidence_reuse" in report:
        reuse = report["evidence_reuse"]
        lines.append(
            f"evidence reused x{reuse['reuse']} at {reuse['clients']} clients: baseline "
            f"{reuse['baseline']['throughput']:.1f}/s, serve without cache "
            f"{reuse['serve']['throughput']:.1f}/s, with cache "
            f"{reuse['serve_cached']['throughput']:.1f}/s (p95 "
            f"{reuse['serve_cached']['p95_ms']} ms): ratio {reuse['ratio']}x, "
            f"{reuse['ratio_without_cache']}x without; cache gain {reuse['cache_gain']}x, "
            f"hit rate {reuse['cache'].get('hit_rate')}"
        )
    if "shadow" in report:
        shadow = report["shadow"]
        copies = shadow["copies"]
        overhead = shadow["p95_overhead"]
        change = "n/a" if overhead is None else f"{overhead:+.1%}"
        lines.append(
            f"shadow at {shadow['clients']} clients: p95 {shadow['serve']['p95_ms']} ms without, "
            f"{shadow['shadow']['p95_ms']} ms with a share of {shadow.get('share')} mirrored "
            f"({change}); copies scored {copies.get('scored')}, "
            f"dropped {copies.get('dropped')}"
        )
    return "\n".join(lines)


def format_sweep(sweep: dict[str, Any] | None) -> list[str]:
    """The token-budget sweep as lines: per runtime, pairs/s and p95 per budget."""
    if not sweep:
        return []
    lines = [f"batch token sweep at {sweep['clients']} clients:"]
    for runtime, rows in sweep["runtimes"].items():
        cells = "  ".join(
            f"{tokens}: {row['throughput']:.1f}/s p95 {row['p95_ms']} ms"
            for tokens, row in rows.items()
        )
        lines.append(f"  {runtime}: {cells}")
    return lines
