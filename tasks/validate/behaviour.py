"""Behavioural checks of a claim verifier (Made-With-ML style ``tests/model``), run by the gate.

A small fixed suite of scientific claims, each with a short evidence passage written for
it, yields three checks per claim:

- **minimum functionality**: a claim given as its own evidence is predicted SUPPORT;
- **whitespace invariance**: the (claim, evidence) prediction is unchanged when spaces are
  doubled and line breaks / tabs are inserted in both texts;
- **case invariance**: the prediction is unchanged when both texts are lower-cased.

A model whose labels are permuted, or whose preprocessing differs between training and
serving, fails these at once; a model that is merely weak fails only some of the
minimum-functionality checks. :func:`run_behaviour_checks` scores every pair in one call
of the predictor and reports the share that holds and every failure in one sentence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

Predict = Callable[[list[str], list[str]], list[str]]
CheckKind = Literal["self_support", "whitespace", "case"]

SUPPORT = "SUPPORT"

# (claim, evidence): short passages written for this suite, not taken from a benchmark
_CLAIMS: tuple[tuple[str, str], ...] = (
    (
        "Vitamin D supplementation reduces the risk of respiratory infections.",
        "In a meta-analysis of 25 randomised controlled trials, daily or weekly vitamin D "
        "supplementation lowered the proportion of participants with at least one acute "
        "respiratory infection.",
    ),
    (
        "Aspirin lowers the risk of colorectal cancer.",
        "Long-term follow-up of five trials showed that daily aspirin reduced the 20-year "
        "incidence of colorectal cancer by about a quarter.",
    ),
    (
        "Regular aerobic exercise improves insulin sensitivity in adults.",
        "After 16 weeks of supervised aerobic training, insulin sensitivity measured by "
        "clamp increased in sedentary adults compared with controls.",
    ),
    (
        "Smoking is a major risk factor for lung cancer.",
        "Cohort studies consistently report that current smokers have a much higher "
        "incidence of lung cancer than people who never smoked.",
    ),
    (
        "Metformin decreases hepatic glucose production.",
        "In patients with type 2 diabetes, metformin suppressed gluconeogenesis in the "
        "liver, reducing fasting glucose output.",
    ),
    (
        "CRISPR-Cas9 can correct a disease-causing mutation in human embryos.",
        "Using CRISPR-Cas9, the heterozygous MYBPC3 mutation was repaired in a majority of "
        "treated human embryos through homology-directed repair.",
    ),
    (
        "Sleep deprivation impairs working memory performance.",
        "Participants kept awake for 24 hours made more errors on an n-back working memory "
        "task than after a night of normal sleep.",
    ),
    (
        "Statins reduce LDL cholesterol levels.",
        "Across trials, statin therapy lowered low-density lipoprotein cholesterol by 30 to "
        "50 percent depending on the dose.",
    ),
    (
        "Antibiotic overuse contributes to antimicrobial resistance.",
        "Regions with higher outpatient antibiotic prescribing showed higher rates of "
        "resistant bacterial isolates in surveillance data.",
    ),
    (
        "Mediterranean diets are associated with lower cardiovascular mortality.",
        "In a prospective cohort of 20,000 adults, high adherence to a Mediterranean diet "
        "was associated with fewer deaths from cardiovascular disease.",
    ),
    (
        "The BRCA1 gene is involved in DNA double-strand break repair.",
        "Cells lacking functional BRCA1 showed defective homologous recombination and "
        "accumulated unrepaired double-strand breaks.",
    ),
    (
        "Measles vaccination does not cause autism.",
        "A nationwide cohort study of over 650,000 children found no increased risk of "
        "autism after measles, mumps and rubella vaccination.",
    ),
    (
        "Gut microbiota composition differs between obese and lean individuals.",
        "Sequencing of faecal samples revealed a different ratio of Firmicutes to "
        "Bacteroidetes in obese compared with lean participants.",
    ),
    (
        "Hand washing reduces the transmission of diarrhoeal disease.",
        "Community trials promoting hand washing with soap reduced episodes of diarrhoea "
        "by about 30 percent.",
    ),
    (
        "Chronic stress elevates cortisol levels.",
        "Caregivers under long-term stress had higher hair cortisol concentrations than "
        "matched non-caregivers.",
    ),
)


@dataclass(frozen=True)
class BehaviourCase:
    """One behavioural check.

    ``self_support``: ``(claim, evidence)`` must be predicted ``expected``. ``whitespace`` /
    ``case``: ``(claim, evidence)`` and ``(variant_claim, variant_evidence)`` must get the
    same label, whatever it is.
    """

    kind: CheckKind
    claim: str
    evidence: str
    expected: str | None = None
    variant_claim: str | None = None
    variant_evidence: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "self_support" and self.expected is None:
            raise ValueError("a self_support case needs an expected label")
        if self.kind != "self_support" and (
            self.variant_claim is None or self.variant_evidence is None
        ):
            raise ValueError(f"a {self.kind} case needs variant_claim and variant_evidence")

    @property
    def title(self) -> str:
        """A short name for reports: the check and the head of the claim."""
        head = self.claim if len(self.claim) <= 50 else self.claim[:47] + "..."
        return f"{self.kind.replace('_', '-')} {head!r}"


@dataclass(frozen=True)
class BehaviourReport:
    """How many behavioural checks held, and one sentence per failure."""

    passed: int
    total: int
    failures: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Share of checks that held; 0.0 when none ran."""
        return self.passed / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "total": self.total,
            "share": self.share,
            "failures": list(self.failures),
        }


def spread_whitespace(text: str) -> str:
    """``text`` with every space doubled, a line break after sentence ends and a trailing tab."""
    spread = text.replace(" ", "  ")
    spread = re.sub(r"([.;])  ", r"\1\n ", spread)
    return f" {spread}\t"


def behaviour_suite() -> list[BehaviourCase]:
    """The fixed suite: three checks for each claim written for it (45 in all)."""
    cases: list[BehaviourCase] = []
    for claim, evidence in _CLAIMS:
        cases.append(BehaviourCase("self_support", claim, claim, expected=SUPPORT))
        cases.append(
            BehaviourCase(
                "whitespace",
                claim,
                evidence,
                variant_claim=spread_whitespace(claim),
                variant_evidence=spread_whitespace(evidence),
            )
        )
        cases.append(
            BehaviourCase(
                "case",
                claim,
                evidence,
                variant_claim=claim.lower(),
                variant_evidence=evidence.lower(),
            )
        )
    return cases


def _pairs(cases: Sequence[BehaviourCase]) -> list[tuple[str, str]]:
    """Every distinct (claim, evidence) pair the cases need, in first-seen order."""
    pairs: dict[tuple[str, str], None] = {}
    for case in cases:
        pairs[(case.claim, case.evidence)] = None
        if case.variant_claim is not None and case.variant_evidence is not None:
            pairs[(case.variant_claim, case.variant_evidence)] = None
    return list(pairs)


def _failure(case: BehaviourCase, labels: dict[tuple[str, str], str]) -> str | None:
    """The sentence describing how ``case`` failed, or ``None`` when it held."""
    label = labels[(case.claim, case.evidence)]
    if case.kind == "self_support":
        if label == case.expected:
            return None
        return f"{case.title}: predicted {label}, expected {case.expected}"
    variant = labels[(case.variant_claim or "", case.variant_evidence or "")]
    if variant == label:
        return None
    change = "spacing changed" if case.kind == "whitespace" else "lower-cased"
    return f"{case.title}: predicted {label}, but {variant} with the texts {change}"


def run_behaviour_checks(
    predict: Predict, cases: Sequence[BehaviourCase] | None = None
) -> BehaviourReport:
    """Run ``cases`` (default: :func:`behaviour_suite`) against ``predict``.

    Args:
        predict: ``predict(claims, evidences)`` returning one label name per pair; called
            once with every distinct pair of the suite.
        cases: the checks; ``None`` for the fixed suite.

    Returns:
        the number of checks that held, the total, and one sentence per failure.

    Raises:
        ValueError: ``predict`` returned a different number of labels than pairs.
    """
    chosen = list(behaviour_suite() if cases is None else cases)
    pairs = _pairs(chosen)
    if not pairs:
        return BehaviourReport(passed=0, total=0)
    predicted = list(predict([c for c, _ in pairs], [e for _, e in pairs]))
    if len(predicted) != len(pairs):
        raise ValueError(
            f"the predictor returned {len(predicted)} labels for {len(pairs)} pairs; "
            "it must return one label per (claim, evidence) pair"
        )
    labels = dict(zip(pairs, predicted, strict=True))
    failures = [f for f in (_failure(case, labels) for case in chosen) if f is not None]
    report = BehaviourReport(
        passed=len(chosen) - len(failures), total=len(chosen), failures=failures
    )
    logger.info(
        "behavioural checks: %d of %d hold (%.1f %%)",
        report.passed,
        report.total,
        100 * report.share,
    )
    return report
