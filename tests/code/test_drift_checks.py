"""Drift checks on synthetic data with known answers, and the verdict rule."""

from __future__ import annotations

import numpy as np
import pytest

from citeops.configs.settings import DriftSettings
from citeops.tasks.drift.checks import (
    CheckResult,
    claim_units,
    domain_classifier_check,
    label_mix_check,
    numeric_check,
    oov_check,
    overall_verdict,
    pair_components,
    vocabulary,
)

TOPIC_A = (
    "protein cell gene mouse tumour receptor kinase pathway expression signalling "
    "mutation cancer therapy patient trial cohort risk mortality dose plasma"
).split()
TOPIC_B = (
    "citation author journal editor review manuscript reference archive library "
    "publisher impact metric index abstract preprint peer conference volume issue page"
).split()
COMMON = "the of and in to with a is was for that by on".split()


def texts(rng: np.random.Generator, topic: list[str], n: int, words: int = 25) -> list[str]:
    """Distinct synthetic sentences mixing a topic's words with common words."""
    pool = topic + COMMON
    return [" ".join(rng.choice(pool, words)) + f" s{i}" for i in range(n)]


@pytest.fixture
def settings() -> DriftSettings:
    return DriftSettings(permutation_rounds=10, seed=0)


@pytest.mark.parametrize("rows", [80, 1100])  # permutation null up to 1,000 rows a side
def test_domain_classifier_no_drift_on_same_distribution(
    settings: DriftSettings, rows: int
) -> None:
    rng = np.random.default_rng(1)
    ref, cur = texts(rng, TOPIC_A, rows), texts(rng, TOPIC_A, rows)
    result = domain_classifier_check("claim_text", ref, cur, settings)
    assert result.status == "no drift" and result.drift is False
    assert result.statistic < result.threshold
    expected_source = "permutation" if rows <= settings.domain_large_rows else "fixed"
    assert result.details["threshold_source"].startswith(expected_source)


@pytest.mark.parametrize("rows", [80, 1100])
def test_domain_classifier_drift_names_the_new_terms(settings: DriftSettings, rows: int) -> None:
    rng = np.random.default_rng(2)
    ref, cur = texts(rng, TOPIC_A, rows), texts(rng, TOPIC_B, rows)
    result = domain_classifier_check("evidence_text", ref, cur, settings)
    assert result.drift is True and result.statistic > 0.9
    current_terms = {t for t, _ in result.details["top_terms_current"]}
    reference_terms = {t for t, _ in result.details["top_terms_reference"]}
    assert current_terms and current_terms <= set(TOPIC_B) | {"s" + str(i) for i in range(rows)}
    assert reference_terms & set(TOPIC_A)


def test_domain_classifier_does_not_score_repeated_texts_by_memory(settings: DriftSettings) -> None:
    """The same 60 texts on both sides, repeated: nothing differs, so no drift."""
    rng = np.random.default_rng(3)
    shared = texts(rng, TOPIC_A, 60)
    result = domain_classifier_check("claim_text", shared * 3, shared * 2, settings)
    assert result.drift is False


def test_domain_classifier_not_enough_data(settings: DriftSettings) -> None:
    rng = np.random.default_rng(4)
    result = domain_classifier_check(
        "claim_text", texts(rng, TOPIC_A, 100), texts(rng, TOPIC_B, 10), settings
    )
    assert result.status == "not enough data" and result.drift is None


def test_components_and_units_group_related_rows() -> None:
    claims = ["c1", "c1", "c2", "c3", "c3"]
    evidences = ["d1", "d2", "d2", "d3", "d4"]
    comp = pair_components(claims, evidences)
    assert comp[0] == comp[1] == comp[2] and comp[3] == comp[4] and comp[0] != comp[3]
    units = claim_units(["c1", "c1", "c1"], [0, 0, 1])
    assert units[0] == units[1] != units[2]


def test_numeric_check_ks_small_samples(settings: DriftSettings) -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(50, 10, 400)
    same = numeric_check("claim_length", "length", ref, rng.normal(50, 10, 200), settings, 0.01)
    shifted = numeric_check("claim_length", "length", ref, rng.normal(70, 10, 200), settings, 0.01)
    assert same.method.startswith("Kolmogorov") and same.direction == "below"
    assert same.drift is False and same.statistic > 0.01
    assert shifted.drift is True and shifted.statistic < 1e-6


def test_numeric_check_wasserstein_large_samples(settings: DriftSettings) -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(0.6, 0.1, 2000)
    same = numeric_check(
        "confidence", "confidence", ref, rng.normal(0.6, 0.1, 5000), settings, 0.01
    )
    shifted = numeric_check(
        "confidence", "confidence", ref, rng.normal(0.45, 0.1, 5000), settings, 0.01
    )
    assert same.method == "normed Wasserstein distance"
    assert same.drift is False and same.statistic < settings.wasserstein_threshold
    assert shifted.drift is True and shifted.statistic > 1.0
    assert len(shifted.details["histogram"]["edges"]) == 31


def test_oov_check(settings: DriftSettings) -> None:
    rng = np.random.default_rng(7)
    vocab = vocabulary(texts(rng, TOPIC_A, 200))
    holdout = texts(rng, TOPIC_A, 50)
    same = oov_check("claim_oov", vocab, holdout, texts(rng, TOPIC_A, 100), settings)
    new = oov_check("claim_oov", vocab, holdout, texts(rng, TOPIC_B, 100), settings)
    assert same.drift is False and abs(same.statistic) < 0.01
    assert new.drift is True and new.statistic > 0.5
    assert {w for w, _ in new.details["top_oov_words"]} <= set(TOPIC_B)


def test_label_mix_check(settings: DriftSettings) -> None:
    labels = ("SUPPORT", "NEI", "REFUTE")
    reference = {"SUPPORT": 500, "NEI": 300, "REFUTE": 200}
    same = label_mix_check(
        "label_mix_vs_reference",
        reference,
        ["SUPPORT"] * 250 + ["NEI"] * 150 + ["REFUTE"] * 100,
        labels,
        settings,
    )
    shifted = label_mix_check(
        "label_mix_vs_reference",
        reference,
        ["SUPPORT"] * 50 + ["NEI"] * 50 + ["REFUTE"] * 400,
        labels,
        settings,
    )
    assert same.drift is False and same.statistic < 0.01
    assert shifted.drift is True and shifted.details["chi2_pvalue"] < 1e-6


def test_label_mix_small_sample_needs_significance(settings: DriftSettings) -> None:
    """A large distance on a handful of rows is noise, not drift (the chi-square guard)."""
    reference = {"SUPPORT": 40, "NEI": 30, "REFUTE": 30}
    current = ["SUPPORT"] * 16 + ["NEI"] * 7 + ["REFUTE"] * 7
    result = label_mix_check(
        "label_mix_vs_reference", reference, current, ("SUPPORT", "NEI", "REFUTE"), settings
    )
    assert result.statistic > settings.label_mix_js_threshold
    assert result.details["chi2_pvalue"] > settings.label_mix_chi2_pvalue
    assert result.drift is False


def _result(name: str, kind: str, drift: bool | None) -> CheckResult:
    status = "not enough data" if drift is None else ("drift" if drift else "no drift")
    return CheckResult(name, kind, "m", None, None, drift, status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flags", "rule", "expected"),
    [
        (
            [("text", True), ("length", False), ("oov", False), ("confidence", False)],
            "any_text_or_half",
            True,
        ),
        (
            [("text", False), ("length", True), ("oov", False), ("confidence", False)],
            "any_text_or_half",
            False,
        ),
        (
            [("text", False), ("length", True), ("oov", True), ("confidence", False)],
            "any_text_or_half",
            True,
        ),
        (
            [("text", False), ("length", True), ("oov", True), ("confidence", False)],
            "majority",
            False,
        ),
        ([("text", False), ("length", True), ("oov", False), ("confidence", False)], "any", True),
        (
            [("text", False), ("length", False), ("oov", None), ("confidence", True)],
            "any_text_or_half",
            False,
        ),  # 1 of 3 judged
        ([("text", None), ("length", None)], "any_text_or_half", None),
    ],
)
def test_overall_verdict(
    flags: list[tuple[str, bool | None]], rule: str, expected: bool | None
) -> None:
    results = [_result(f"c{i}", kind, drift) for i, (kind, drift) in enumerate(flags)]
    assert overall_verdict(results, rule) is expected
