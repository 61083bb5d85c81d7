"""The drift checks. Each compares a reference sample with the current window and returns a
:class:`CheckResult` holding a statistic, the threshold it is held against, and a verdict.

Checks never raise on thin data: fewer than ``min_rows`` rows gives ``status="not enough
data"`` and ``drift=None`` (no verdict). Thresholds come from :class:`DriftSettings`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from citeops.configs.settings import DriftSettings

CheckKind = Literal["text", "length", "oov", "label_mix", "confidence"]
Status = Literal["drift", "no drift", "not enough data", "skipped"]
NOT_ENOUGH_DATA: Status = "not enough data"
WORD_RE = re.compile(r"[^\W\d_]{2,}")  # words of two or more letters, for vocabularies


@dataclass
class CheckResult:
    """One check's outcome.

    ``drift`` is ``None`` when no verdict is possible (``status`` says why). ``direction``
    says how the statistic is compared: ``"above"`` (drift when statistic > threshold) or
    ``"below"`` (drift when statistic < threshold, for p-values).
    """

    name: str
    kind: CheckKind
    method: str
    statistic: float | None
    threshold: float | None
    drift: bool | None
    status: Status
    direction: Literal["above", "below"] = "above"
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def summary(self) -> dict[str, Any]:
        """The compact form printed by the CLI and kept in the JSON summary."""
        return {
            "statistic": _round(self.statistic),
            "threshold": _round(self.threshold),
            "drift": self.drift,
            "status": self.status,
            "method": self.method,
            "kind": self.kind,
            "direction": self.direction,
            **({"note": self.note} if self.note else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def not_enough_data(name: str, kind: CheckKind, method: str, rows: int, needed: int) -> CheckResult:
    return CheckResult(
        name,
        kind,
        method,
        None,
        None,
        None,
        NOT_ENOUGH_DATA,
        note=f"{rows} rows; at least {needed} are needed for a verdict",
    )


def skipped(name: str, kind: CheckKind, method: str, reason: str) -> CheckResult:
    return CheckResult(name, kind, method, None, None, None, "skipped", note=reason)


def _status(drift: bool) -> Status:
    return "drift" if drift else "no drift"


# ---- text: domain classifier ------------------------------------------------------------


def distinct(texts: Sequence[str]) -> list[str]:
    """Texts with duplicates removed, first occurrence kept."""
    return list(dict.fromkeys(t for t in texts if t))


def group_folds(groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices for ``folds`` folds that never split a group; groups are
    dealt to folds in a seeded random order (fast, unlike sklearn's StratifiedGroupKFold,
    which dominated the permutation null's run time)."""
    unique, inverse = np.unique(groups, return_inverse=True)
    fold_of_group = np.random.default_rng(seed).permutation(len(unique)) % folds
    fold_of_row = fold_of_group[inverse]
    rows = np.arange(len(groups))
    return [(rows[fold_of_row != k], rows[fold_of_row == k]) for k in range(folds)]


def _fit_weighted(x: Any, text_ids: np.ndarray, y: np.ndarray) -> Any:
    """Logistic regression on rows given as (text id, side), duplicates collapsed into
    sample weights and classes balanced: the same fit as on every row, several times faster
    when a window repeats texts."""
    from sklearn.linear_model import LogisticRegression

    keys, counts = np.unique(text_ids * 2 + y, return_counts=True)
    ids, sides = keys // 2, keys % 2
    per_side = np.bincount(y, minlength=2).astype(float)
    weights = counts * (len(y) / (2 * np.maximum(per_side[sides], 1)))
    model = LogisticRegression(solver="liblinear", C=1.0, random_state=0)
    return model.fit(x[ids], sides, sample_weight=weights)


def _cv_auc(
    x: Any, text_ids: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> float:
    """Mean ROC AUC of a linear classifier over folds that never split a group (so a text
    seen in training is never scored by memory). ``x`` holds one row per distinct text;
    ``text_ids``, ``y`` and ``groups`` one entry per row."""
    from sklearn.metrics import roc_auc_score

    scores = []
    for train, test in group_folds(groups, folds, seed):
        if len(np.unique(y[test])) < 2 or len(np.unique(y[train])) < 2:
            continue
        model = _fit_weighted(x, text_ids[train], y[train])
        keys, counts = np.unique(text_ids[test] * 2 + y[test], return_counts=True)
        scores.append(
            roc_auc_score(keys % 2, model.decision_function(x[keys // 2]), sample_weight=counts)
        )
    return float(np.mean(scores)) if scores else 0.5


def pair_components(claims: Sequence[str], evidences: Sequence[str]) -> np.ndarray:
    """Component id per row of the graph linking rows that share a claim or an evidence.

    One claim checked against several related documents, or one document cited by several
    claims, makes rows that are alike for a reason other than drift; cross-validation
    folds keep each component whole so the classifier cannot score by that likeness.
    """
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def find(node: tuple[int, str]) -> tuple[int, str]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for claim, evidence in zip(claims, evidences, strict=True):
        a, b = find((0, claim)), find((1, evidence))
        if a != b:
            parent[a] = b
    roots: dict[tuple[int, str], int] = {}
    return np.fromiter(
        (roots.setdefault(find((0, c)), len(roots)) for c in claims),
        dtype=np.int64,
        count=len(claims),
    )


def claim_units(claims: Sequence[str], sides: Sequence[int]) -> np.ndarray:
    """Unit id per row: rows with the same claim on the same side move together when the
    permutation null shuffles sides (a query's documents arrive together)."""
    ids: dict[tuple[int, str], int] = {}
    return np.fromiter(
        (ids.setdefault((s, c), len(ids)) for c, s in zip(claims, sides, strict=True)),
        dtype=np.int64,
        count=len(claims),
    )


def _permuted(y: np.ndarray, units: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if units is None:
        return rng.permutation(y)
    unit_side = np.zeros(units.max() + 1, dtype=y.dtype)
    unit_side[units] = y
    return rng.permutation(unit_side)[units]


def domain_classifier_check(
    name: str,
    reference: Sequence[str],
    current: Sequence[str],
    settings: DriftSettings,
    groups: np.ndarray | None = None,
    units: np.ndarray | None = None,
) -> CheckResult:
    """Text drift: can a TF-IDF + logistic regression tell reference texts from current ones?

    The statistic is the cross-validated ROC AUC (mean over ``domain_cv_folds`` stratified
    folds). Folds are grouped by text, or by ``groups`` (one id per reference row then
    current row, e.g. :func:`pair_components`): the same text is never learnt in one fold
    and scored in another, which would score memory, not drift. The permutation null
    shuffles sides by ``units`` (e.g. :func:`claim_units`) when given, else by row.

    With more than ``domain_large_rows`` rows on each side, drift is
    AUC > ``domain_auc_threshold``; otherwise the threshold is the null AUC that an exact
    permutation test at level ``1 - permutation_quantile`` requires, from
    ``permutation_rounds`` runs with the sides shuffled (the same classifier's null
    distribution). The smaller side sets the regime: 300 queries against 1,000 reference
    rows are too few for the fixed 0.55 (measured, BENCHMARKS.md). The details name the
    terms that most separate the two samples.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    method = "domain classifier ROC AUC (TF-IDF + logistic regression, cross-validated)"
    ref, cur = list(reference), list(current)
    texts = ref + cur
    index = {text: i for i, text in enumerate(dict.fromkeys(texts))}
    rows_text = np.fromiter((index[t] for t in texts), dtype=np.int64, count=len(texts))
    if groups is None:
        groups = rows_text
    y = np.array([0] * len(ref) + [1] * len(cur))
    rows = min(len(set(ref)), len(set(cur)))
    if rows < settings.min_rows:
        return not_enough_data(name, "text", method, rows, settings.min_rows)
    vectorizer = TfidfVectorizer(
        sublinear_tf=True,
        min_df=2 if len(index) >= 200 else 1,
        max_features=50_000,
        dtype=np.float32,
    )
    x = vectorizer.fit_transform(list(index)).tocsr()
    folds = min(settings.domain_cv_folds, rows, len(np.unique(groups)))
    auc = _cv_auc(x, rows_text, y, groups, folds, settings.seed)
    details: dict[str, Any] = {
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "distinct_texts": len(index),
        "folds": folds,
    }
    if min(len(ref), len(cur)) > settings.domain_large_rows:
        threshold = settings.domain_auc_threshold
        details["threshold_source"] = (
            f"fixed (more than {settings.domain_large_rows} rows on each side)"
        )
    else:
        rng = np.random.default_rng(settings.seed)
        null = [
            _cv_auc(x, rows_text, _permuted(y, units, rng), groups, folds, settings.seed + 1 + i)
            for i in range(settings.permutation_rounds)
        ]
        threshold = permutation_threshold(null, settings.permutation_quantile)
        details["threshold_source"] = (
            f"permutation null: {settings.permutation_rounds} rounds, level "
            f"{1 - settings.permutation_quantile:.3g}"
        )
        details["permutation_pvalue"] = round(
            (1 + sum(v >= auc for v in null)) / (len(null) + 1), 4
        )
        details["null_aucs"] = [round(v, 4) for v in null]
    if settings.top_terms:
        model = _fit_weighted(x, rows_text, y)
        details.update(
            _top_terms(vectorizer.get_feature_names_out(), model.coef_[0], settings.top_terms)
        )
    drift = auc > threshold
    return CheckResult(name, "text", method, auc, threshold, drift, _status(drift), details=details)


def permutation_threshold(null: Sequence[float], quantile: float) -> float:
    """The null AUC an observed AUC must exceed for an exact permutation test at level
    ``1 - quantile``: the (k+1)-th largest of R null values, k = floor((1-q)(R+1)) - 1
    (at least the largest). ``np.quantile`` of the null instead would interpolate inside
    the top values and give a level above 1 - q (about 7% for q = 0.95, R = 50).
    """
    ordered = sorted(null, reverse=True)
    k = max(int(np.floor((1 - quantile) * (len(ordered) + 1) + 1e-9)) - 1, 0)
    return float(ordered[min(k, len(ordered) - 1)])


def _top_terms(terms: np.ndarray, coef: np.ndarray, k: int) -> dict[str, list[list[Any]]]:
    """The terms whose weights most favour the current (positive) and the reference side."""
    order = np.argsort(coef)
    current = [[str(terms[i]), round(float(coef[i]), 4)] for i in order[::-1][:k] if coef[i] > 0]
    reference = [[str(terms[i]), round(float(coef[i]), 4)] for i in order[:k] if coef[i] < 0]
    return {"top_terms_current": current, "top_terms_reference": reference}


# ---- numeric distributions: lengths and confidence --------------------------------------


def token_lengths(texts: Sequence[str]) -> np.ndarray:
    """Whitespace token counts; a repeated text is counted once."""
    known: dict[str, int] = {}
    lengths = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        n = known.get(text)
        if n is None:
            n = known[text] = len(text.split())
        lengths[i] = n
    return lengths


def numeric_check(
    name: str,
    kind: CheckKind,
    reference: np.ndarray,
    current: np.ndarray,
    settings: DriftSettings,
    pvalue: float,
) -> CheckResult:
    """Two-sample distribution check.

    Up to ``domain_large_rows`` rows on the smaller side: Kolmogorov-Smirnov, drift when its
    p-value is below ``pvalue``. Above: the Wasserstein distance divided by the reference
    standard deviation, drift when it exceeds ``wasserstein_threshold`` (a p-value on that
    many rows flags shifts too small to matter); these are Evidently's defaults. The
    smaller side decides because the distance's sampling noise comes from it: 1,100
    queries against 300 held-out confidences exceeded 0.1 in 15% of same-data splits.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    rows = min(len(ref), len(cur))
    if rows < settings.min_rows:
        return not_enough_data(
            name, kind, "Kolmogorov-Smirnov / normed Wasserstein", rows, settings.min_rows
        )
    ks = ks_2samp(ref, cur)
    norm = max(float(np.std(ref)), 1e-3)
    wasserstein = float(wasserstein_distance(ref, cur)) / norm
    details = {
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "ks_statistic": round(float(ks.statistic), 6),
        "ks_pvalue": float(ks.pvalue),
        "normed_wasserstein": round(wasserstein, 6),
        "reference_mean": round(float(ref.mean()), 4),
        "current_mean": round(float(cur.mean()), 4),
        "reference_median": float(np.median(ref)),
        "current_median": float(np.median(cur)),
        "histogram": _histograms(ref, cur),
    }
    if min(len(ref), len(cur)) <= settings.domain_large_rows:
        drift = bool(ks.pvalue < pvalue)
        return CheckResult(
            name,
            kind,
            "Kolmogorov-Smirnov p-value",
            float(ks.pvalue),
            pvalue,
            drift,
            _status(drift),
            "below",
            details,
        )
    threshold = settings.wasserstein_threshold
    drift = wasserstein > threshold
    return CheckResult(
        name,
        kind,
        "normed Wasserstein distance",
        wasserstein,
        threshold,
        drift,
        _status(drift),
        "above",
        details,
    )


def _histograms(ref: np.ndarray, cur: np.ndarray, bins: int = 30) -> dict[str, list[float]]:
    """Both samples binned on shared edges (clipped at the 99th percentile), as densities."""
    both = np.concatenate([ref, cur])
    low, high = float(both.min()), float(np.quantile(both, 0.99))
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    ref_counts, _ = np.histogram(np.clip(ref, low, high), edges)
    cur_counts, _ = np.histogram(np.clip(cur, low, high), edges)
    return {
        "edges": [round(float(e), 4) for e in edges],
        "reference": [round(float(c) / max(len(ref), 1), 6) for c in ref_counts],
        "current": [round(float(c) / max(len(cur), 1), 6) for c in cur_counts],
    }


# ---- out-of-vocabulary rate -------------------------------------------------------------


def vocabulary(texts: Sequence[str]) -> set[str]:
    """Lower-cased words (two or more letters) of the texts."""
    words: set[str] = set()
    for text in texts:
        words.update(WORD_RE.findall(text.lower()))
    return words


def oov_counts(vocab: set[str], texts: Sequence[str]) -> tuple[int, int, Counter[str]]:
    """(out-of-vocabulary words, all words, the OOV words counted)."""
    total = 0
    missing: Counter[str] = Counter()
    for text in texts:
        words = WORD_RE.findall(text.lower())
        total += len(words)
        missing.update(w for w in words if w not in vocab)
    return sum(missing.values()), total, missing


def oov_check(
    name: str,
    vocab: set[str],
    reference_holdout: Sequence[str],
    current: Sequence[str],
    settings: DriftSettings,
) -> CheckResult:
    """Share of current words missing from the reference vocabulary, minus the same share
    on held-out reference texts (so the baseline rate of rare words is not drift).

    Drift when the increase exceeds ``oov_rate_increase``.
    """
    method = "out-of-vocabulary rate increase over held-out reference"
    if len(current) < settings.min_rows:
        return not_enough_data(name, "oov", method, len(current), settings.min_rows)
    if not reference_holdout:
        return skipped(name, "oov", method, "no held-out reference texts")
    ref_missing, ref_total, _ = oov_counts(vocab, reference_holdout)
    cur_missing, cur_total, counter = oov_counts(vocab, current)
    ref_rate = ref_missing / max(ref_total, 1)
    cur_rate = cur_missing / max(cur_total, 1)
    increase = cur_rate - ref_rate
    drift = increase > settings.oov_rate_increase
    details = {
        "reference_oov_rate": round(ref_rate, 6),
        "current_oov_rate": round(cur_rate, 6),
        "vocabulary_size": len(vocab),
        "current_words": cur_total,
        "top_oov_words": [[w, n] for w, n in counter.most_common(settings.top_terms or 10)],
    }
    return CheckResult(
        name,
        "oov",
        method,
        increase,
        settings.oov_rate_increase,
        drift,
        _status(drift),
        details=details,
    )


# ---- predicted-label mix ----------------------------------------------------------------


def label_mix_check(
    name: str,
    expected_counts: Mapping[str, float],
    current_labels: Sequence[str | None],
    labels: Sequence[str],
    settings: DriftSettings,
    method: str = "Jensen-Shannon distance of label mixes (+ chi-square)",
) -> CheckResult:
    """Current predicted-label mix against a reference mix (counts per label).

    Statistic: Jensen-Shannon distance (base 2, 0..1). Drift when it exceeds
    ``label_mix_js_threshold`` *and* a chi-square test of the two count vectors has
    p < ``label_mix_chi2_pvalue`` (an effect that is both large and not sampling noise).
    """
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    counts = Counter(label for label in current_labels if label in labels)
    observed = np.array([counts.get(label, 0) for label in labels], dtype=float)
    expected = np.array([expected_counts.get(label, 0) for label in labels], dtype=float)
    if observed.sum() < settings.min_rows:
        return not_enough_data(name, "label_mix", method, int(observed.sum()), settings.min_rows)
    if expected.sum() == 0:
        return skipped(name, "label_mix", method, "reference has no labels")
    js = float(jensenshannon(observed / observed.sum(), expected / expected.sum(), base=2))
    keep = (observed + expected) > 0
    table = np.vstack([expected[keep], observed[keep]])
    pvalue = float(chi2_contingency(table).pvalue) if keep.sum() > 1 else 1.0
    drift = js > settings.label_mix_js_threshold and pvalue < settings.label_mix_chi2_pvalue
    details = {
        "labels": list(labels),
        "reference": [round(v / expected.sum(), 6) for v in expected],
        "current": [round(v / observed.sum(), 6) for v in observed],
        "reference_rows": int(expected.sum()),
        "current_rows": int(observed.sum()),
        "chi2_pvalue": pvalue,
        "chi2_pvalue_threshold": settings.label_mix_chi2_pvalue,
    }
    return CheckResult(
        name,
        "label_mix",
        method,
        js,
        settings.label_mix_js_threshold,
        drift,
        _status(drift),
        details=details,
    )


# ---- the dataset-level verdict ----------------------------------------------------------


def overall_verdict(results: Sequence[CheckResult], rule: str) -> bool | None:
    """Dataset-level drift by ``rule`` over the checks that reached a verdict.

    ``any_text_or_half``: a text (domain classifier) check drifts, or at least half of the
    checks do; ``any``: any check drifts; ``majority``: more than half do. ``None`` when no
    check reached a verdict.
    """
    judged = [r for r in results if r.drift is not None]
    if not judged:
        return None
    drifted = sum(1 for r in judged if r.drift)
    if rule == "any":
        return drifted > 0
    if rule == "majority":
        return drifted > len(judged) / 2
    if rule == "any_text_or_half":
        text = any(r.drift for r in judged if r.kind == "text")
        return text or drifted >= len(judged) / 2
    raise ValueError(f"unknown verdict rule {rule!r}")
