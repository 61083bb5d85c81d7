"""The behavioural suite and its runner, driven by plain Python predictors."""

from __future__ import annotations

import pytest

from citeops.tasks.data.multivers import LABELS
from citeops.tasks.validate.behaviour import (
    BehaviourCase,
    behaviour_suite,
    run_behaviour_checks,
    spread_whitespace,
)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def ideal(claims: list[str], evidences: list[str]) -> list[str]:
    """SUPPORT when the evidence is the claim (up to case and spacing), NEI otherwise."""
    return [
        "SUPPORT" if _normalise(c) == _normalise(e) else "NEI"
        for c, e in zip(claims, evidences, strict=True)
    ]


def test_suite_has_three_checks_per_claim_with_real_perturbations() -> None:
    cases = behaviour_suite()
    kinds = [case.kind for case in cases]
    assert 30 <= len(cases) <= 60
    assert kinds.count("self_support") == kinds.count("whitespace") == kinds.count("case")
    for case in cases:
        if case.kind == "self_support":
            assert case.claim == case.evidence and case.expected == "SUPPORT"
        else:
            assert case.variant_claim != case.claim and case.variant_evidence != case.evidence
            assert case.claim != case.evidence
    whitespace = [c for c in cases if c.kind == "whitespace"]
    assert all(_normalise(c.variant_claim or "") == _normalise(c.claim) for c in whitespace)
    assert len({c.claim for c in cases}) == len(cases) // 3  # every claim is distinct


def test_ideal_predictor_passes_every_check() -> None:
    report = run_behaviour_checks(ideal)
    assert report.total == len(behaviour_suite())
    assert report.passed == report.total and report.failures == [] and report.share == 1.0


def test_predictor_blind_to_self_evidence_fails_only_those_checks() -> None:
    report = run_behaviour_checks(lambda claims, evidences: ["NEI"] * len(claims))
    assert report.passed == 2 * report.total // 3
    assert report.share == pytest.approx(2 / 3)
    assert len(report.failures) == report.total // 3
    assert all("predicted NEI, expected SUPPORT" in f for f in report.failures)
    assert all(f.startswith("self-support '") for f in report.failures)


def test_case_sensitive_predictor_fails_the_case_checks() -> None:
    def case_sensitive(claims: list[str], evidences: list[str]) -> list[str]:
        return [
            "REFUTE" if e.islower() and c != e else label
            for c, e, label in zip(claims, evidences, ideal(claims, evidences), strict=True)
        ]

    report = run_behaviour_checks(case_sensitive)
    assert len(report.failures) == report.total // 3
    assert all(f.startswith("case '") and "lower-cased" in f for f in report.failures)
    assert all("predicted NEI, but REFUTE" in f for f in report.failures)


def test_whitespace_sensitive_predictor_fails_the_whitespace_checks() -> None:
    def whitespace_sensitive(claims: list[str], evidences: list[str]) -> list[str]:
        return ["REFUTE" if "  " in e else "NEI" for e in evidences]

    report = run_behaviour_checks(whitespace_sensitive)
    whitespace = [f for f in report.failures if f.startswith("whitespace '")]
    assert len(whitespace) == report.total // 3
    assert all("spacing changed" in f for f in whitespace)


def test_every_pair_is_scored_in_one_call() -> None:
    calls: list[int] = []

    def counting(claims: list[str], evidences: list[str]) -> list[str]:
        calls.append(len(claims))
        return ideal(claims, evidences)

    run_behaviour_checks(counting)
    claims = len(behaviour_suite()) // 3
    assert calls == [4 * claims]  # self pair, original, spaced and lower-cased pair


def test_custom_cases_and_a_wrong_label_count() -> None:
    case = BehaviourCase("self_support", "A claim.", "A claim.", expected=LABELS[2])
    report = run_behaviour_checks(ideal, [case])
    assert (report.passed, report.total) == (0, 1)
    assert report.failures == ["self-support 'A claim.': predicted SUPPORT, expected REFUTE"]
    assert run_behaviour_checks(ideal, []).total == 0
    with pytest.raises(ValueError, match="returned 0 labels for 1 pairs"):
        run_behaviour_checks(lambda c, e: [], [case])
    with pytest.raises(ValueError, match="needs variant_claim"):
        BehaviourCase("case", "a", "b")


def test_spread_whitespace_changes_only_spacing() -> None:
    text = "Statins lower LDL. They are safe; mostly."
    spread = spread_whitespace(text)
    assert spread != text and "\n" in spread and "  " in spread
    assert spread.split() == text.split()
