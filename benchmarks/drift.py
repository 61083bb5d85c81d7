"""`citeops bench drift`: time a drift run on N generated, distinct production queries and,
when an Evidently environment is given, run Evidently's DataDriftPreset on the same data.

Production traffic is mostly distinct, and the checks collapse repeated texts into
weights, so the workload must not repeat a few thousand benchmark pairs. Each query is
made from the dev and test pairs of the training datasets (the *pool*) of one dataset:

- a pool pair is drawn; its **claim** is the head of the pair's claim, cut at a random
  word, continued by words of another pool claim to the same length (so claim lengths
  keep their distribution);
- its **evidence** is the pair's abstract with one sentence (two in abstracts of six or
  more) replaced by sentences of other pool abstracts of the same dataset.

A generated pair already seen is drawn again (seeded), so the rows are distinct by
construction; ``distinct_rows`` is nonetheless counted from the files read back. The
dataset of each query follows scenario ``same`` (the datasets' training proportions) or
``mixed`` (their shares of the pool, which changes the mix). Queries are scored by the
stand-in classifier of :mod:`citeops.benchmarks.drift_calibration` and written as
date-partitioned query-log JSONL files. The timed part is what ``citeops drift`` does:
read the files, load the reference, run every check, write the HTML + JSON report
(MLflow logging and alerting excluded).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from citeops.benchmarks.drift_calibration import fit_standin
from citeops.benchmarks.memory import own_peak_rss_mb
from citeops.benchmarks.settings import BenchSettings, load_bench_settings
from citeops.tasks.data.multivers import LABELS, Example, corpus_file, read_splits
from citeops.tasks.drift.checks import token_lengths
from citeops.tasks.drift.current import read_query_folder
from citeops.tasks.drift.detect import detect_drift
from citeops.tasks.drift.reference import ReferencePredictions, holdout_examples, load_reference
from citeops.tasks.drift.report import write_report
from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

PART_LINES = 10_000
SCENARIOS = ("same", "mixed")
MAX_REDRAWS = 50  # draws per query before the generator gives up on distinctness
EVIDENTLY_SCRIPT = Path(__file__).parent / "evidently_compare.py"
CHILD = "from citeops.benchmarks.drift import drift_worker_main; drift_worker_main()"
# our check -> Evidently's column, for comparing verdicts
SAME_QUESTION = {
    "claim_text": "claim",
    "evidence_text": "evidence",
    "claim_length": "claim_tokens",
    "evidence_length": "evidence_tokens",
    "confidence": "confidence",
    "label_mix_vs_reference": "prediction",
}


class BenchDriftError(CiteopsError):
    """The drift benchmark cannot build its workload (unknown scenario, too little data)."""


@dataclass(frozen=True)
class DatasetPool:
    """One dataset's raw material: its distinct pool claims (as words), cited abstracts
    (as sentences), and the pool's pairs as (claim index, abstract index)."""

    name: str
    claims: list[list[str]]
    abstracts: list[list[str]]
    pairs: list[tuple[int, int]]


def write_scored_queries(
    folder: Path, queries: Iterable[tuple[str, str]], predict: Callable[..., Any]
) -> int:
    """Score ``queries`` part by part and write them as query-log parts of ``PART_LINES``
    lines under one date (memory: one part); returns the rows written."""
    day = folder / "queries" / "date=2026-11-20"
    day.mkdir(parents=True, exist_ok=True)
    written = 0
    iterator = iter(queries)
    while batch := list(islice(iterator, PART_LINES)):
        records = query_records(batch, predict, start=written)
        with (day / f"part-{written // PART_LINES:05d}.jsonl").open("wb") as handle:
            handle.writelines(orjson.dumps(row) + b"\n" for row in records)
        written += len(batch)
    return written


def read_records(folder: Path) -> Iterator[dict[str, Any]]:
    """The query-log records written under ``folder``, in order."""
    for path in sorted((folder / "queries").rglob("*.jsonl")):
        with path.open("rb") as handle:
            yield from (orjson.loads(line) for line in handle if line.strip())


def write_queries(folder: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as query-log parts of ``PART_LINES`` lines under one date."""
    day = folder / "queries" / "date=2026-11-20"
    day.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(records), PART_LINES)):
        with (day / f"part-{part:05d}.jsonl").open("w") as handle:
            for row in records[start : start + PART_LINES]:
                handle.write(json.dumps(row) + "\n")


def _abstract_sentences(data_dir: Path, dataset: str, doc_ids: set[int]) -> dict[int, list[str]]:
    """The non-empty sentences of the abstracts ``doc_ids`` of ``dataset``'s corpus."""
    found: dict[int, list[str]] = {}
    with corpus_file(data_dir, dataset).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            if int(row["doc_id"]) in doc_ids:
                sentences = [str(s).strip() for s in row.get("abstract") or [] if str(s).strip()]
                if sentences:
                    found[int(row["doc_id"])] = sentences
    return found


def dataset_pools(data_dir: Path, pool: Sequence[Example]) -> list[DatasetPool]:
    """Group the pool by dataset: distinct claims split into words, cited abstracts split
    into sentences.

    Raises:
        BenchDriftError: a dataset has fewer than two distinct claims or abstracts.
    """
    pools = []
    for name in sorted({e.dataset for e in pool}):
        members = [e for e in pool if e.dataset == name and e.claim.split()]
        sentences = _abstract_sentences(data_dir, name, {e.doc_id for e in members})
        claim_index = {c: i for i, c in enumerate(dict.fromkeys(e.claim for e in members))}
        doc_index = {d: i for i, d in enumerate(sorted(sentences))}
        pairs = [
            (claim_index[e.claim], doc_index[e.doc_id]) for e in members if e.doc_id in doc_index
        ]
        if len(claim_index) < 2 or len(doc_index) < 2:
            raise BenchDriftError(
                f"bench drift: {name} has {len(claim_index)} claims and {len(doc_index)} "
                "abstracts in its dev + test splits; at least two of each are needed"
            )
        claims = [c.split() for c in claim_index]
        pools.append(DatasetPool(name, claims, [sentences[d] for d in doc_index], pairs))
    return pools


def splice_claim(claims: list[list[str]], first: int, rng: random.Random) -> str:
    """The head of claim ``first`` continued by words of another claim, to its length."""
    second = rng.randrange(len(claims) - 1)
    second += second >= first  # any claim but the first
    head, other = claims[first], claims[second]
    cut = rng.randint(1, max(len(head) - 1, 1))
    need = len(head) - cut
    start = rng.randint(0, max(len(other) - need, 0))
    tail = other[start : start + need]
    return " ".join(head[:cut] + tail + head[cut + len(tail) : len(head)])


def mixed_evidence(abstracts: list[list[str]], index: int, rng: random.Random) -> str:
    """Abstract ``index`` with one sentence (two from six sentences on) replaced by
    sentences of other abstracts."""
    sentences = list(abstracts[index])
    for _ in range(1 + (len(sentences) >= 6)):
        donor = rng.randrange(len(abstracts) - 1)
        donor += donor >= index  # any abstract but this one
        sentences[rng.randrange(len(sentences))] = rng.choice(abstracts[donor])
    return " ".join(sentences)


def iter_distinct_queries(
    pools: Sequence[DatasetPool], weights: Sequence[float], rows: int, seed: int
) -> Iterator[tuple[str, str]]:
    """``rows`` distinct (claim, evidence) pairs, streamed; each query's dataset drawn by
    ``weights``. Only a 16-byte digest of each pair generated is remembered.

    Raises:
        BenchDriftError: ``MAX_REDRAWS`` draws in a row gave pairs already generated (the
            pool is too small for ``rows`` distinct queries).
    """
    rng = random.Random(seed)
    chosen = rng.choices(range(len(pools)), weights=weights, k=rows)
    seen: set[bytes] = set()
    for made, k in enumerate(chosen):
        pool = pools[k]
        for _ in range(MAX_REDRAWS):
            claim, abstract = pool.pairs[rng.randrange(len(pool.pairs))]
            pair = (
                splice_claim(pool.claims, claim, rng),
                mixed_evidence(pool.abstracts, abstract, rng),
            )
            digest = hashlib.blake2b(f"{pair[0]}\x1f{pair[1]}".encode(), digest_size=16).digest()
            if digest not in seen:
                break
        else:
            raise BenchDriftError(
                f"bench drift: no new distinct query after {MAX_REDRAWS} draws at row "
                f"{made}; ask for fewer --rows"
            )
        seen.add(digest)
        yield pair


def distinct_queries(
    pools: Sequence[DatasetPool], weights: Sequence[float], rows: int, seed: int
) -> list[tuple[str, str]]:
    """:func:`iter_distinct_queries` as a list."""
    return list(iter_distinct_queries(pools, weights, rows, seed))


def scenario_weights(
    pools: Sequence[DatasetPool], pool: Sequence[Example], train: Sequence[Example], scenario: str
) -> list[float]:
    """Dataset shares: ``same``: as in training (no shift of the mix); ``mixed``: as in
    the pool (the dev + test sizes, a different mix).

    Raises:
        BenchDriftError: unknown scenario.
    """
    if scenario not in SCENARIOS:
        raise BenchDriftError(
            f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}"
        )
    source = train if scenario == "same" else pool
    return [float(sum(e.dataset == p.name for e in source)) for p in pools]


def query_records(
    queries: Sequence[tuple[str, str]], predict: Callable[..., Any], start: int = 0
) -> list[dict[str, Any]]:
    """Query-log lines for ``queries``, scored by ``predict`` (probabilities per label);
    request ids numbered from ``start``."""
    probs = predict([c for c, _ in queries], [e for _, e in queries])
    return [
        {
            "request_id": f"bench-{start + n}",
            "datetime": "2026-11-20T12:00:00+00:00",
            "claim": claim,
            "evidence": evidence,
            "model_version": "bench",
            "slot": "blue",
            "prediction": LABELS[int(p.argmax())],
            "probabilities": dict(zip(LABELS, map(float, p), strict=True)),
            "latency_ms": 1.0,
        }
        for n, ((claim, evidence), p) in enumerate(zip(queries, probs, strict=True))
    ]


@dataclass(frozen=True)
class DriftJob:
    """What the timed drift run gets from the parent (pickled over stdin)."""

    settings: Settings
    root: Path
    datasets: tuple[str, ...]
    predictions: ReferencePredictions


def drift_worker_main() -> None:
    """Child process of :func:`run_speed_bench`: the timed drift run on the job read from
    stdin (what ``citeops drift`` does, MLflow and alerts excluded); prints its figures and
    its peak RSS as one JSON line."""
    job: DriftJob = pickle.load(sys.stdin.buffer)
    settings = job.settings
    t0 = time.perf_counter()
    window = read_query_folder(
        job.root, sample_size=settings.drift.text_sample_size, seed=settings.drift.seed
    )
    t1 = time.perf_counter()
    reference = load_reference(settings, job.datasets, job.predictions)
    t2 = time.perf_counter()
    report = detect_drift(reference, window, settings.drift)
    t3 = time.perf_counter()
    write_report(report, job.root / "reports")
    t4 = time.perf_counter()
    figures = {
        "rows": len(window),
        "distinct_rows": window.distinct_rows(),
        "distinct_claims": window.distinct_claims(),
        "distinct_evidences": window.distinct_evidences(),
        "seconds": t4 - t0,
        "read_seconds": t1 - t0,
        "reference_seconds": t2 - t1,
        "checks_seconds": t3 - t2,
        "report_seconds": t4 - t3,
        "peak_rss_mb": own_peak_rss_mb(),
        "drift": report.drift,
        "checks": {c.name: c.drift for c in report.checks},
    }
    print(json.dumps(figures))


def _timed_run(job: DriftJob) -> dict[str, Any]:
    """Run :func:`drift_worker_main` in a child process (so that its peak RSS is the drift
    run's alone, not the generator's); its figures.

    Raises:
        BenchDriftError: the child failed.
    """
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=pickle.dumps(job),
        capture_output=True,
        check=False,
    )
    if child.returncode != 0:
        tail = child.stderr.decode(errors="replace").strip()[-800:]
        raise BenchDriftError(f"bench drift: the timed run failed: {tail}")
    return json.loads(child.stdout.decode().strip().splitlines()[-1])


def run_speed_bench(
    settings: Settings,
    rows: int,
    evidently_python: str | None = None,
    progress: Callable[[str], None] | None = None,
    scenario: str = "same",
    datasets: tuple[str, ...] | None = None,
    bench: BenchSettings | None = None,
) -> dict[str, Any]:
    """Generate ``rows`` distinct queries (streamed to disk), time a drift run on them in a
    child process, compare with Evidently; the goals come from ``bench`` (default: the
    environment's benchmark settings).

    Returns the JSON-able figures: ``rows``, ``distinct_rows`` (distinct (claim, evidence)
    pairs read back), ``seconds`` and its parts, ``peak_rss_mb`` of the drift run, the
    goals (``target_seconds``, ``target_distinct_rows``, ``target_peak_rss_mb``) and
    whether they were met (``goals_met``), the verdicts, and ``evidently`` (its figures,
    or why it was skipped).

    Raises:
        BenchDriftError: unknown scenario, too little data for ``rows`` distinct queries,
            or the timed run failed.
        DataFileError: a dataset file is missing or corrupt.
    """
    say = progress or (lambda _msg: None)
    bench = bench or load_bench_settings()
    datasets = tuple(datasets or settings.train.datasets)
    seed = settings.drift.seed
    data = settings.data_dir
    pool = read_splits(data, datasets, "dev") + read_splits(data, datasets, "test")
    train = read_splits(data, datasets, "train")
    pools = dataset_pools(data, pool)
    weights = scenario_weights(pools, pool, train, scenario)
    predict = fit_standin(train, seed)
    held = holdout_examples(settings, datasets)
    preds = ReferencePredictions(
        "stand-in: tf-idf + logistic regression",
        None,
        datasets,
        LABELS,
        predict([e.claim for e in held], [e.evidence for e in held]),
        gold=[e.label for e in held],
    )
    with tempfile.TemporaryDirectory(prefix="citeops-bench-drift-") as tmp:
        root = Path(tmp)
        say(f"generating {rows:,} distinct queries from {len(pool):,} {'+'.join(datasets)} pairs")
        started = time.perf_counter()
        write_scored_queries(root, iter_distinct_queries(pools, weights, rows, seed), predict)
        generated = time.perf_counter() - started
        size = sum(path.stat().st_size for path in root.rglob("*.jsonl"))
        say(f"{rows:,} queries written ({size / 1e6:,.0f} MB); timing the drift run")
        run = _timed_run(DriftJob(settings, root, datasets, preds))
        target_distinct = math.ceil(bench.drift_min_distinct_share * rows)
        result: dict[str, Any] = {
            "rows": run["rows"],
            "distinct_rows": run["distinct_rows"],
            "distinct_claims": run["distinct_claims"],
            "distinct_evidences": run["distinct_evidences"],
            "seconds": round(run["seconds"], 2),
            "read_seconds": round(run["read_seconds"], 2),
            "reference_seconds": round(run["reference_seconds"], 2),
            "checks_seconds": round(run["checks_seconds"], 2),
            "report_seconds": round(run["report_seconds"], 2),
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
            "input_mb": round(size / 1e6, 1),
            "generate_seconds": round(generated, 2),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "target_seconds": bench.drift_target_seconds,
            "target_distinct_rows": target_distinct,
            "target_peak_rss_mb": bench.drift_target_peak_rss_mb,
            "goals_met": {
                "seconds": run["seconds"] <= bench.drift_target_seconds,
                "distinct_rows": run["distinct_rows"] >= target_distinct,
                "peak_rss_mb": run["peak_rss_mb"] <= bench.drift_target_peak_rss_mb,
            },
            "distinct_pairs": len({(e.claim, e.evidence) for e in pool}),
            "text_sample_rows": min(rows, settings.drift.text_sample_size),
            "reference": f"{'+'.join(datasets)} train; held-out: dev sample",
            "scenario": scenario,
            "current": f"distinct queries recombined from {'+'.join(datasets)} dev+test pairs "
            "(spliced claims, abstracts with sentences of other abstracts)"
            + (", datasets in training proportions" if scenario == "same" else ", pool mix"),
            "drift": run["drift"],
            "checks": run["checks"],
        }
        reference = load_reference(settings, datasets, preds) if evidently_python else None
        result["evidently"] = _evidently(
            evidently_python, root, reference, read_records(root), preds, say
        )
    if isinstance(result["evidently"], dict) and "columns" in result["evidently"]:
        cols = result["evidently"]["columns"]
        result["verdicts_agree"] = {
            ours: {
                "citeops": result["checks"].get(ours),
                "evidently": cols.get(theirs, {}).get("drift"),
            }
            for ours, theirs in SAME_QUESTION.items()
        }
    return result


def _evidently(
    python: str | None,
    root: Path,
    reference: Any,
    records: Iterable[dict[str, Any]],
    preds: ReferencePredictions,
    say: Callable[[str], None],
) -> dict[str, Any] | str:
    """Evidently on the same reference rows and current queries, in its own environment."""
    if not python:
        return "skipped: no --evidently-python (a venv with evidently==0.7.23, pandas==2.3.3)"
    if not Path(python).exists():
        return f"skipped: {python} does not exist"
    records = list(records)
    ref_rows = len(reference.claims)
    conf, labels = preds.confidences, preds.predicted
    ref_lines = [
        {
            "claim": c,
            "evidence": e,
            "claim_tokens": int(lc),
            "evidence_tokens": int(le),
            "confidence": float(conf[i % len(conf)]),
            "prediction": labels[i % len(labels)],
        }
        for i, (c, e, lc, le) in enumerate(
            zip(
                reference.claims,
                reference.evidences,
                token_lengths(reference.claims),
                token_lengths(reference.evidences),
                strict=True,
            )
        )
    ][:ref_rows]
    cur_claims = [r["claim"] for r in records]
    cur_evidence = [r["evidence"] for r in records]
    cur_lines = [
        {
            "claim": r["claim"],
            "evidence": r["evidence"],
            "claim_tokens": int(lc),
            "evidence_tokens": int(le),
            "confidence": max(r["probabilities"].values()),
            "prediction": r["prediction"],
        }
        for r, lc, le in zip(
            records, token_lengths(cur_claims), token_lengths(cur_evidence), strict=True
        )
    ]
    ref_path, cur_path = root / "evidently_reference.jsonl", root / "evidently_current.jsonl"
    for path, lines in ((ref_path, ref_lines), (cur_path, cur_lines)):
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    say(f"running Evidently on {len(cur_lines)} rows")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [python, str(EVIDENTLY_SCRIPT), str(ref_path), str(cur_path)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "failed: Evidently did not finish within 900 s"
    wall = time.perf_counter() - started
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
        return f"failed: {last}"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["wall_seconds_with_startup"] = round(wall, 2)
    return out
