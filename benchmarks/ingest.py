"""`citeops bench ingest`: generate realistic feedback logs, ingest them into a fresh store
(SQLite, PostgreSQL, or each in turn) in a child process, and report lines/s and the
child's peak memory beside a baseline (reading the same files and JSON-parsing each line,
nothing else) in the same run.

The generated lines mix claims of the training splits with 1-2 sentence evidence from the
corpora, a few percent exact duplicates, conflicting labels, benchmark test claims (leaks)
and bad lines of every kind; the generator tallies what each line must become, and the
benchmark checks the report against that tally.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from citeops.benchmarks.memory import ChildPeaks, own_peak_rss_mb
from citeops.benchmarks.settings import BenchSettings, load_bench_settings
from citeops.tasks.data.multivers import LABELS, normalise_claim, read_split
from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

LABEL_WEIGHTS = (0.45, 0.35, 0.20)
BAD_KINDS = (
    "bad_json",
    "bad_utf8",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unknown_label",
    "empty_text",
    "bad_datetime",
    "future_datetime",
    "empty_line",
)


class BenchError(CiteopsError):
    """The benchmark's ingest did not account for the generated lines as expected."""


def _texts(settings: Settings) -> tuple[list[str], list[str], list[str]]:
    """Training claims, test claims (for leaks) and evidence snippets, each unique."""
    train: dict[str, str] = {}
    test: dict[str, str] = {}
    snippets: dict[str, str] = {}
    for dataset in settings.ingest.leakage_datasets:
        for ex in read_split(settings.data_dir, dataset, "train"):
            train.setdefault(normalise_claim(ex.claim), ex.claim)
        for ex in read_split(settings.data_dir, dataset, settings.ingest.leakage_split):
            test.setdefault(normalise_claim(ex.claim), ex.claim)
        with open(settings.data_dir / dataset / "corpus.jsonl", "rb") as handle:
            rows = [orjson.loads(line) for line in handle if line.strip()]
        for row in rows:
            sentences = [s.strip() for s in row.get("abstract") or [] if s.strip()]
            for i in range(0, max(len(sentences) - 1, 0), 2):
                text = " ".join(sentences[i : i + 1 + (i % 4 == 0)])
                if 20 <= len(text) <= 600:
                    snippets.setdefault(normalise_claim(text), text)
    for key in test:
        train.pop(key, None)
    return list(train.values()), list(test.values()), list(snippets.values())


def generate(
    settings: Settings,
    root: Path,
    lines: int,
    seed: int = 0,
    bench: BenchSettings | None = None,
) -> dict[str, Any]:
    """Write ``lines`` feedback lines as date-partitioned parts under ``root``; return the
    tally of what each must become (accepted, duplicates, conflicts, quarantined, leaked).
    Part size and the shares of bad, duplicate and conflicting lines come from ``bench``
    (default: :func:`~citeops.benchmarks.settings.load_bench_settings`)."""
    cfg = bench or load_bench_settings()
    rng = random.Random(seed)
    claims, test_claims, snippets = _texts(settings)
    n_claims = len(claims)
    pair_ids = iter(
        rng.sample(range(n_claims * len(snippets)), min(lines, n_claims * len(snippets)))
    )
    emitted: dict[tuple[int, int], set[str]] = {}
    recent: list[dict[str, Any]] = []
    tally: Counter[str] = Counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=60) / max(lines, 1)
    part_lines = cfg.ingest_part_lines
    handle = None
    bad_cut = cfg.ingest_bad_fraction
    dup_cut = bad_cut + cfg.ingest_duplicate_fraction
    conflict_cut = dup_cut + cfg.ingest_conflict_fraction
    leak_cut = conflict_cut + 0.005
    for i in range(lines):
        if i % part_lines == 0:
            if handle:
                handle.close()
            day = (start + step * i).strftime("%Y-%m-%d")
            folder = root / "feedback" / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / f"part-{i // part_lines:05d}.jsonl", "wb")  # noqa: SIM115
        when = (start + step * i).isoformat(timespec="milliseconds")
        draw = rng.random()
        if draw < bad_cut:
            kind = BAD_KINDS[i % len(BAD_KINDS)]
            handle.write(_bad_line(kind, when, claims[i % n_claims], snippets[i % len(snippets)]))
            tally["quarantined"] += 1
            tally[f"reason:{kind}"] += 1
            continue
        if draw < conflict_cut and recent:
            base = dict(recent[rng.randrange(len(recent))])
            if draw >= dup_cut:
                base["user_label"] = rng.choice([x for x in LABELS if x != base["user_label"]])
            base["datetime"] = when
            record = base
        else:
            if draw < leak_cut:
                claim_index, claim = -1 - (i % len(test_claims)), test_claims[i % len(test_claims)]
                snippet_index = i % len(snippets)
            else:
                pid = next(pair_ids)
                claim_index, snippet_index = pid % n_claims, pid // n_claims
                claim = claims[claim_index]
            label = rng.choices(LABELS, LABEL_WEIGHTS)[0]
            probs = [rng.random() for _ in LABELS]
            total = sum(probs)
            record = {
                "claim": claim,
                "evidence": snippets[snippet_index],
                "model": "claim-verifier",
                "prediction": {
                    lab: round(p / total, 4) for lab, p in zip(LABELS, probs, strict=True)
                },
                "user_label": label,
                "datetime": when,
                "request_id": f"{i:012x}",
                "model_version": "3",
                "slot": "blue" if i % 2 else "green",
                "_pair": (claim_index, snippet_index),
            }
        pair = record["_pair"]
        labels = emitted.setdefault(pair, set())
        if record["user_label"] in labels:
            tally["duplicates"] += 1
        else:
            tally["conflicts" if labels else "accepted"] += 1
            tally["leaked"] += pair[0] < 0
            labels.add(record["user_label"])
        line = orjson.dumps({k: v for k, v in record.items() if k != "_pair"})
        handle.write(line + (b"\r\n" if i % 97 == 0 else b"\n"))
        if len(recent) < 1000:
            recent.append(record)
        else:
            recent[rng.randrange(1000)] = record
    if handle:
        handle.close()
    tally["lines"] = lines
    return dict(tally)


def _bad_line(kind: str, when: str, claim: str, evidence: str) -> bytes:
    good = {"claim": claim, "evidence": evidence, "user_label": "NEI", "datetime": when}
    if kind == "bad_json":
        return orjson.dumps(good)[:-7] + b"\n"
    if kind == "bad_utf8":
        return orjson.dumps(good).replace(b'"NEI"', b'"N\xff\xfeI"') + b"\n"
    if kind == "not_an_object":
        return orjson.dumps([claim, evidence]) + b"\n"
    if kind == "missing_field":
        return orjson.dumps({k: v for k, v in good.items() if k != "evidence"}) + b"\n"
    if kind == "wrong_type":
        return orjson.dumps(good | {"claim": 42}) + b"\n"
    if kind == "unknown_label":
        return orjson.dumps(good | {"user_label": "MAYBE"}) + b"\n"
    if kind == "empty_text":
        return orjson.dumps(good | {"claim": "   "}) + b"\n"
    if kind == "bad_datetime":
        return orjson.dumps(good | {"datetime": "yesterday"}) + b"\n"
    if kind == "future_datetime":
        return orjson.dumps(good | {"datetime": "2999-01-01T00:00:00Z"}) + b"\n"
    return b"   \n"  # empty_line


def baseline(root: Path) -> dict[str, float]:
    """Read every part and JSON-parse each line: the floor any ingest pays."""
    started = time.perf_counter()
    count = 0
    for path in sorted(root.rglob("*.jsonl")):
        with open(path, "rb") as handle:
            for line in handle:
                count += 1
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    pass
    seconds = time.perf_counter() - started
    return {
        "lines": count,
        "seconds": round(seconds, 3),
        "lines_per_second": round(count / seconds),
    }


def worker_main() -> None:
    """Child process: ingest CITEOPS_LOG_ROOT, print the report, timing and peak RSS."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.ingest.pipeline import ingest

    settings = load_settings()
    started = time.perf_counter()
    with ChildPeaks() as children:
        report = ingest(settings)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    reader = resource.getrusage(resource.RUSAGE_CHILDREN)  # the reader child, if any
    own_mb = own_peak_rss_mb()
    # ru_maxrss of a child counts this process's size when it started it: sampled instead
    reader_mb = children.peak_mb
    if reader_mb is None:
        reader_mb = reader.ru_maxrss / 1024
    result = {
        "report": report.to_dict(),
        "seconds": seconds,
        "store_process_cpu_seconds": own.ru_utime + own.ru_stime,
        "reader_process_cpu_seconds": reader.ru_utime + reader.ru_stime,
        "peak_rss_mb": own_mb + reader_mb,
        "store_process_peak_rss_mb": own_mb,
        "reader_process_peak_rss_mb": reader_mb,
        "store_size_bytes": _store_size(settings),
    }
    print(json.dumps(result))


def _store_size(settings: Settings) -> int:
    """Bytes the store takes: the SQLite file, or the PostgreSQL database's size."""
    from sqlalchemy import create_engine, text

    url = settings.store_url or ""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).stat().st_size
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar())
    finally:
        engine.dispose()


def store_label(spec: str) -> str:
    """A store as named in the results: ``sqlite``, ``postgresql`` (or its URL's dialect)."""
    return spec.split(":", 1)[0].split("+", 1)[0]


def _libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+driver://`` URL as libpq takes it (``postgresql://``)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


@contextmanager
def fresh_store(spec: str, work: Path, bench: BenchSettings) -> Iterator[str]:
    """A fresh, empty store for one benchmark run; yields its SQLAlchemy URL.

    ``spec`` is ``sqlite`` (a new file under ``work``), ``postgresql``
    (``bench.ingest_postgres_url``) or a ``postgresql+psycopg://`` URL: on PostgreSQL a
    database of its own is created through that URL's server (so nothing collides with
    other users of the database named there) and dropped afterwards.

    Raises:
        BenchError: an unknown store, or PostgreSQL cannot be reached or refuses the
            database.
    """
    if spec == "sqlite":
        yield f"sqlite:///{work / 'bench.db'}"
        return
    url = bench.ingest_postgres_url if spec == "postgresql" else spec
    if not url.startswith("postgresql"):
        raise BenchError(f"bench ingest: unknown store {spec!r}: sqlite, postgresql or a URL")
    import psycopg

    name = f"citeops_bench_{os.getpid()}_{int(time.time() * 1000)}"
    try:
        admin = psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=10)
    except psycopg.Error as error:
        raise BenchError(f"bench ingest: cannot connect to {_safe(url)}: {error}") from None
    with admin:
        try:
            admin.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as error:
            raise BenchError(f"bench ingest: cannot create a database: {error}") from None
        try:
            scheme, rest = url.split("://", 1)
            server = rest.split("/", 1)[0]
            yield f"{scheme}://{server}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _safe(url: str) -> str:
    """``url`` without its password."""
    scheme, rest = url.split("://", 1)
    if "@" not in rest:
        return url
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"


def _ingest_child(settings: Settings, work: Path, logs: Path, url: str) -> dict[str, Any]:
    """Run :func:`worker_main` on ``logs`` into store ``url``; its JSON line.

    Raises:
        BenchError: the child failed.
    """
    env = os.environ | {
        "CITEOPS_HOME": str(work / "home"),
        "CITEOPS_LOG_ROOT": str(logs),
        "CITEOPS_STORE_URL": url,
        "CITEOPS_DATA_DIR": str(settings.data_dir),
    }
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", "from citeops.benchmarks.ingest import worker_main; worker_main()"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise BenchError(f"bench ingest child failed: {child.stderr.strip()[-500:]}")
    return json.loads(child.stdout.strip().splitlines()[-1]) | {"process_seconds": wall}


def _store_figures(
    name: str, out: dict[str, Any], settings: Settings, bench: BenchSettings
) -> dict[str, Any]:
    """One store's figures as reported, goals included."""
    report = out["report"]
    return {
        "store": name,
        "lines": report["lines"],
        "seconds": round(out["seconds"], 2),
        "lines_per_second": round(report["lines"] / out["seconds"]),
        "peak_rss_mb": round(out["peak_rss_mb"], 1),  # store + reader processes, summed
        "store_process_peak_rss_mb": round(out["store_process_peak_rss_mb"], 1),
        "reader_process_peak_rss_mb": round(out["reader_process_peak_rss_mb"], 1),
        # CPU time of each process: on an idle 2-core machine the wall time approaches the
        # larger of the two (they overlap); under contention `seconds` is much longer
        "store_process_cpu_seconds": round(out["store_process_cpu_seconds"], 1),
        "reader_process_cpu_seconds": round(out["reader_process_cpu_seconds"], 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "process_seconds": round(out["process_seconds"], 2),
        "store_mb": round(out["store_size_bytes"] / 1e6, 1),
        "chunk_lines": settings.ingest.chunk_lines,
        "goals_met": {
            "seconds": out["seconds"] <= bench.ingest_target_seconds,
            "peak_rss_mb": out["peak_rss_mb"] <= bench.ingest_target_peak_rss_mb,
        },
        "report": report,
    }


def run_bench(
    settings: Settings,
    progress: Callable[[str], None] = lambda _: None,
    bench: BenchSettings | None = None,
    stores: Sequence[str] = ("sqlite",),
) -> dict[str, Any]:
    """Generate ``bench.ingest_lines`` lines, baseline, then ingest them into each of
    ``stores`` (see :func:`fresh_store`), each in a fresh store and a child process, and
    check every report against the generator's tally (``bench`` default: the
    environment's).

    Returns the first store's figures at the top level, every store's under ``stores``,
    the baseline beside them.

    Raises:
        BenchError: a child failed, a report differs from the generator's tally, or a store
            cannot be made.
    """
    bench = bench or load_bench_settings()
    lines = bench.ingest_lines
    work = settings.home / "bench" / f"ingest-{os.getpid()}-{int(time.time())}"
    logs = work / "logs"
    figures: list[dict[str, Any]] = []
    try:
        progress(f"bench ingest: generating {lines:,} lines under {logs}")
        started = time.perf_counter()
        tally = generate(settings, logs, lines, bench=bench)
        generated = time.perf_counter() - started
        size = sum(p.stat().st_size for p in logs.rglob("*.jsonl"))
        progress(f"bench ingest: {size / 1e6:,.0f} MB in {generated:.1f} s; baseline")
        base = baseline(logs)
        for spec in stores:
            name = store_label(spec)
            run_dir = work / f"run-{len(figures)}"
            run_dir.mkdir(parents=True)
            with fresh_store(spec, run_dir, bench) as url:
                progress(f"bench ingest: ingesting into a fresh {name} store in a child process")
                out = _ingest_child(settings, run_dir, logs, url)
            _check(out["report"], tally)
            figures.append(_store_figures(name, out, settings, bench))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    extra = {
        "input_mb": round(size / 1e6, 1),
        "generate_seconds": round(generated, 2),
        "target_seconds": bench.ingest_target_seconds,
        "target_peak_rss_mb": bench.ingest_target_peak_rss_mb,
        "baseline": base,
        "stores": figures,
    }
    return figures[0] | extra


def _check(report: dict[str, Any], tally: dict[str, Any]) -> None:
    for key in ("lines", "accepted", "duplicates", "conflicts", "quarantined", "leaked"):
        if report[key] != tally.get(key, 0):
            raise BenchError(f"bench ingest: {key} = {report[key]}, generated {tally.get(key, 0)}")
    reasons = {k.split(":", 1)[1]: v for k, v in tally.items() if k.startswith("reason:")}
    if report["reasons"] != reasons:
        raise BenchError(f"bench ingest: reasons {report['reasons']} != generated {reasons}")
