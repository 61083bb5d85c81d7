"""Calibration of the drift verdict: false-alarm rate and power, measured, not guessed.

* False alarms: SciFact claims (train + dev + test pooled, grouped by claim) are split at
  random into a reference (training rows), a held-out reference sample and a current
  window; nothing differs, so every "drift" verdict is a false alarm (target <= 5%).
  With the default ``reference_sample_size`` the text checks have more than 1,000 rows
  (fixed AUC threshold); with ``CITEOPS_DRIFT__REFERENCE_SAMPLE_SIZE=500`` fewer (the
  permutation null): run both to calibrate both regimes.
* Power: the same reference, with a current window of which a share (100%, 50%, 25%,
  10%) is Citation-Integrity queries (dev + test); the smallest share detected in at
  least ``DETECTED_RATE`` of the rounds is reported.

Predictions come from a stand-in classifier (TF-IDF + logistic regression fitted once on
the Citation-Integrity *train* split, outside both the pool and the mixed-in rows), so the
prediction checks run with a real, fixed model in every round at no inference cost. The
checks test distributions of its outputs, not its accuracy.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.data.multivers import LABELS, SPLITS, Example, read_split
from citeops.tasks.drift.current import QueryWindow, window_from_records
from citeops.tasks.drift.detect import DriftReport, detect_drift
from citeops.tasks.drift.reference import ReferencePredictions, build_reference

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

SHARES = (1.0, 0.5, 0.25, 0.10)
DETECTED_RATE = 0.8
HOLDOUT_ROWS = 300
Predictor = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def fit_standin(examples: Sequence[Example], seed: int = 0) -> Predictor:
    """A TF-IDF + logistic-regression claim verifier: probabilities in ``LABELS`` order."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    def join(claims: Sequence[str], evidences: Sequence[str]) -> list[str]:
        return [f"{c} || {e[:3000]}" for c, e in zip(claims, evidences, strict=True)]

    model = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, max_features=20_000, dtype=np.float32),
        LogisticRegression(max_iter=300, random_state=seed),
    )
    model.fit(
        join([e.claim for e in examples], [e.evidence for e in examples]),
        [e.label for e in examples],
    )
    classes = list(model.classes_)

    def predict(claims: Sequence[str], evidences: Sequence[str]) -> np.ndarray:
        probs = model.predict_proba(join(claims, evidences))
        out = np.zeros((len(claims), len(LABELS)), dtype=np.float32)
        for j, label_id in enumerate(classes):
            out[:, label_id] = probs[:, j]
        return out

    return predict


def query_window(examples: Sequence[Example], predict: Predictor, source: str) -> QueryWindow:
    """Examples as query-log records scored by ``predict``."""
    probs = predict([e.claim for e in examples], [e.evidence for e in examples])
    records = (
        {
            "claim": e.claim,
            "evidence": e.evidence,
            "prediction": LABELS[int(p.argmax())],
            "probabilities": dict(zip(LABELS, map(float, p), strict=True)),
        }
        for e, p in zip(examples, probs, strict=True)
    )
    return window_from_records(records, source)


def _groups(examples: Sequence[Example]) -> list[list[Example]]:
    by_claim: dict[tuple[str, int], list[Example]] = defaultdict(list)
    for ex in examples:
        by_claim[(ex.split, ex.claim_id)].append(ex)
    return list(by_claim.values())


def _take(groups: list[list[Example]], start: int, rows: int) -> tuple[list[Example], int]:
    taken: list[Example] = []
    while start < len(groups) and len(taken) < rows:
        taken.extend(groups[start])
        start += 1
    return taken, start


def calibration_round(
    settings: Settings,
    pool: list[list[Example]],
    other: Sequence[Example],
    predict: Predictor,
    share: float,
    current_rows: int,
    seed: int,
) -> DriftReport:
    """One random split: reference / held-out / current, with ``share`` of the current
    window drawn from ``other``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    groups = [pool[i] for i in order]
    n_other = int(round(current_rows * share))
    current, at = _take(groups, 0, current_rows - n_other)
    current = current[: current_rows - n_other]
    holdout, at = _take(groups, at, HOLDOUT_ROWS)
    train = [ex for group in groups[at:] for ex in group]
    if n_other:
        current += [other[i] for i in rng.choice(len(other), n_other, replace=False)]
    drift_settings = settings.drift.model_copy(update={"seed": seed})
    preds = ReferencePredictions(
        model_uri="stand-in: tf-idf + logistic regression",
        model_version=None,
        datasets=("scifact",),
        labels=LABELS,
        probabilities=predict([e.claim for e in holdout], [e.evidence for e in holdout]),
        gold=[e.label for e in holdout],
    )
    reference = build_reference(
        train, holdout, drift_settings.reference_sample_size, seed, ("scifact",), preds
    )
    return detect_drift(reference, query_window(current, predict, f"share {share}"), drift_settings)


def _calibration_data(
    settings: Settings, pool_datasets: Sequence[str] = ("scifact",)
) -> tuple[list[list[Example]], list[Example], Predictor]:
    data = settings.data_dir
    pool = _groups(
        [ex for name in pool_datasets for split in SPLITS for ex in read_split(data, name, split)]
    )
    other = read_split(data, "citint", "dev") + read_split(data, "citint", "test")
    predict = fit_standin(read_split(data, "citint", "train"), settings.drift.seed)
    return pool, other, predict


_WORKER: dict[str, Any] = {}


def _worker_init(pool_datasets: Sequence[str]) -> None:
    from citeops.configs.settings import load_settings

    settings = load_settings()
    _WORKER.update(settings=settings, data=_calibration_data(settings, pool_datasets))


def _worker_round(share: float, current_rows: int, seed: int) -> DriftReport:
    pool, other, predict = _WORKER["data"]
    return calibration_round(_WORKER["settings"], pool, other, predict, share, current_rows, seed)


def _rates(reports: Sequence[DriftReport]) -> dict[str, Any]:
    if not reports:
        return {"rounds": 0, "drift_rate": None, "check_drift_rates": {}}
    checks: dict[str, list[bool]] = defaultdict(list)
    for report in reports:
        for check in report.checks:
            if check.drift is not None:
                checks[check.name].append(bool(check.drift))
    return {
        "rounds": len(reports),
        "drift_rate": round(float(np.mean([bool(r.drift) for r in reports])), 4),
        "check_drift_rates": {k: round(float(np.mean(v)), 4) for k, v in checks.items()},
    }


def run_calibration(
    settings: Settings,
    rounds: int = 40,
    mix_rounds: int = 10,
    current_rows: int = 300,
    shares: Sequence[float] = SHARES,
    progress: Callable[[str], None] | None = None,
    workers: int = 1,
    pool_datasets: Sequence[str] = ("scifact",),
) -> dict[str, Any]:
    """False-alarm rate over ``rounds`` same-data splits and detection rate per share of
    Citation-Integrity over ``mix_rounds`` each (rounds spread over ``workers`` processes)."""
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    pool, other, predict = _calibration_data(settings, pool_datasets)
    if "citint" in pool_datasets:  # Citation-Integrity cannot be both the pool and the shift
        shares = ()
    jobs = [(0.0, 1000 + i) for i in range(rounds)]
    jobs += [(share, 2000 + i) for share in shares for i in range(mix_rounds)]
    outcomes: dict[float, list[DriftReport]] = defaultdict(list)

    def record(share: float, seed: int, report: DriftReport) -> None:
        outcomes[share].append(report)
        kind = "null" if share == 0 else f"share {share:.0%}"
        say(f"{kind} seed {seed}: {report.status} {report.drifted_checks}")

    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            workers, initializer=_worker_init, initargs=(tuple(pool_datasets),)
        ) as executor:
            futures = [
                (share, seed, executor.submit(_worker_round, share, current_rows, seed))
                for share, seed in jobs
            ]
            for share, seed, future in futures:
                record(share, seed, future.result())
    else:
        for share, seed in jobs:
            record(
                share,
                seed,
                calibration_round(settings, pool, other, predict, share, current_rows, seed),
            )
    null = outcomes[0.0]
    power = {f"{share:.2f}": _rates(outcomes[share]) for share in shares if outcomes[share]}
    detected = [float(s) for s, r in power.items() if r["drift_rate"] >= DETECTED_RATE]
    return {
        "pool": list(pool_datasets),
        "current_rows": current_rows,
        "reference_sample_size": settings.drift.reference_sample_size,
        "permutation_rounds": settings.drift.permutation_rounds,
        "rule": settings.drift.verdict_rule,
        "false_alarm": _rates(null),
        "power": power,
        "smallest_share_detected": min(detected) if detected else None,
        "detected_means_rate_at_least": DETECTED_RATE,
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_calibration(result: dict[str, Any]) -> str:
    lines = [
        f"current window {result['current_rows']} rows, rule {result['rule']}",
        f"false-alarm rate: {result['false_alarm']['drift_rate'] or 0:.1%} over "
        f"{result['false_alarm']['rounds']} splits",
        "  per check: "
        + ", ".join(f"{k} {v:.1%}" for k, v in result["false_alarm"]["check_drift_rates"].items()),
    ]
    for share, rates in result["power"].items():
        lines.append(
            f"citint share {float(share):.0%}: detected in {rates['drift_rate']:.0%} of "
            f"{rates['rounds']} rounds"
        )
        lines.append(
            "  per check: "
            + ", ".join(f"{k} {v:.0%}" for k, v in rates["check_drift_rates"].items())
        )
    lines.append(
        f"smallest share detected (>= {result['detected_means_rate_at_least']:.0%} of "
        f"rounds): {result['smallest_share_detected']}"
    )
    lines.append(f"seconds: {result['seconds']}")
    return "\n".join(lines)
