"""`citeops bench drift`: time a drift run on N generated production queries and, when an
Evidently environment is given, run Evidently's DataDriftPreset on the same data.

The queries are (claim, evidence) pairs drawn with replacement from the dev and test splits
of the training datasets (scenario ``same``: in the datasets' training proportions;
``mixed``: uniformly, which changes the dataset mix), scored by the stand-in classifier of
:mod:`citeops.benchmarks.drift_calibration`, and written as date-partitioned query-log JSONL
files; the
timed part is what ``citeops drift`` does: read the files, load the reference, run every
check, write the HTML + JSON report (MLflow logging and alerting excluded).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.benchmarks.drift_calibration import fit_standin
from citeops.tasks.data.multivers import LABELS, read_splits
from citeops.tasks.drift.checks import token_lengths
from citeops.tasks.drift.current import read_query_folder
from citeops.tasks.drift.detect import detect_drift
from citeops.tasks.drift.reference import ReferencePredictions, holdout_examples, load_reference
from citeops.tasks.drift.report import write_report

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

PART_LINES = 10_000
EVIDENTLY_SCRIPT = Path(__file__).parent / "evidently_compare.py"
# our check -> Evidently's column, for comparing verdicts
SAME_QUESTION = {
    "claim_text": "claim",
    "evidence_text": "evidence",
    "claim_length": "claim_tokens",
    "evidence_length": "evidence_tokens",
    "confidence": "confidence",
    "label_mix_vs_reference": "prediction",
}


def write_queries(folder: Path, records: list[dict[str, Any]]) -> None:
    day = folder / "queries" / "date=2026-11-20"
    day.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(records), PART_LINES)):
        with (day / f"part-{part:05d}.jsonl").open("w") as handle:
            for row in records[start : start + PART_LINES]:
                handle.write(json.dumps(row) + "\n")


def _draw(pool: list[Any], train: list[Any], rows: int, scenario: str, seed: int) -> np.ndarray:
    """Indices into ``pool``. ``same``: datasets in their training proportions (no drift
    expected); ``mixed``: uniform over the pool, whose dataset mix differs from training."""
    rng = np.random.default_rng(seed)
    if scenario == "mixed":
        return rng.integers(len(pool), size=rows)
    if scenario != "same":
        raise ValueError(f"unknown scenario {scenario!r}: same or mixed")
    names = sorted({e.dataset for e in train})
    share = np.array([sum(e.dataset == n for e in train) for n in names], dtype=float)
    chosen = rng.choice(len(names), size=rows, p=share / share.sum())
    members = {
        k: np.array([i for i, e in enumerate(pool) if e.dataset == n]) for k, n in enumerate(names)
    }
    return np.array([members[k][rng.integers(len(members[k]))] for k in chosen])


def run_speed_bench(
    settings: Settings,
    rows: int,
    evidently_python: str | None = None,
    progress: Callable[[str], None] | None = None,
    scenario: str = "same",
    datasets: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    datasets = tuple(datasets or settings.train.datasets)
    pool = read_splits(settings.data_dir, datasets, "dev") + read_splits(
        settings.data_dir, datasets, "test"
    )
    predict = fit_standin(read_splits(settings.data_dir, datasets, "train"), settings.drift.seed)
    pool_probs = predict([e.claim for e in pool], [e.evidence for e in pool])
    held = holdout_examples(settings, datasets)
    preds = ReferencePredictions(
        "stand-in: tf-idf + logistic regression",
        None,
        datasets,
        LABELS,
        predict([e.claim for e in held], [e.evidence for e in held]),
        gold=[e.label for e in held],
    )
    pick = _draw(
        pool, read_splits(settings.data_dir, datasets, "train"), rows, scenario, settings.drift.seed
    )
    records = []
    for n, i in enumerate(pick):
        p = pool_probs[i]
        records.append(
            {
                "request_id": f"bench-{n}",
                "datetime": "2026-11-20T12:00:00+00:00",
                "claim": pool[i].claim,
                "evidence": pool[i].evidence,
                "model_version": "bench",
                "slot": "blue",
                "prediction": LABELS[int(p.argmax())],
                "probabilities": dict(zip(LABELS, map(float, p), strict=True)),
                "latency_ms": 1.0,
            }
        )
    with tempfile.TemporaryDirectory(prefix="citeops-bench-drift-") as tmp:
        root = Path(tmp)
        write_queries(root, records)
        say(f"{rows} queries written; timing the drift run")
        t0 = time.perf_counter()
        window = read_query_folder(root)
        t1 = time.perf_counter()
        reference = load_reference(settings, datasets, preds)
        t2 = time.perf_counter()
        report = detect_drift(reference, window, settings.drift)
        t3 = time.perf_counter()
        write_report(report, root / "reports")
        t4 = time.perf_counter()
        result: dict[str, Any] = {
            "rows": len(window),
            "seconds": round(t4 - t0, 2),
            "read_seconds": round(t1 - t0, 2),
            "reference_seconds": round(t2 - t1, 2),
            "checks_seconds": round(t3 - t2, 2),
            "report_seconds": round(t4 - t3, 2),
            "target_seconds": 30,
            "distinct_pairs": len({(e.claim, e.evidence) for e in pool}),
            "text_sample_rows": min(rows, settings.drift.text_sample_size),
            "reference": f"{'+'.join(datasets)} train; held-out: dev sample",
            "scenario": scenario,
            "current": f"{'+'.join(datasets)} dev+test pairs drawn with replacement"
            + (" in training proportions" if scenario == "same" else ", uniformly"),
            "drift": report.drift,
            "checks": {c.name: c.drift for c in report.checks},
        }
        result["evidently"] = _evidently(evidently_python, root, reference, records, preds, say)
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
    records: list[dict[str, Any]],
    preds: ReferencePredictions,
    say: Callable[[str], None],
) -> dict[str, Any] | str:
    """Evidently on the same reference rows and current queries, in its own environment."""
    if not python:
        return "skipped: no --evidently-python (a venv with evidently==0.7.23, pandas==2.3.3)"
    if not Path(python).exists():
        return f"skipped: {python} does not exist"
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
