"""How well the flagging finds labels known to be wrong: precision and recall on seeded
flips (the demo's simulated users, ``citeops feedback measure``).

``precision`` = flipped labels flagged / labels flagged; ``recall`` = flipped labels
flagged / flipped labels. Both are None when their denominator is 0.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.data.multivers import LABEL2ID, LABELS
from citeops.tasks.feedback.confident import DEFAULT_RULE, MIN_WRONG, Rule, find_label_issues

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.data.multivers import Example
    from citeops.tasks.feedback.quality import Scorer


@dataclass(frozen=True)
class SeededLabel:
    """A label a simulated user sent, and whether it was flipped on purpose."""

    claim: str
    evidence: str
    label: str
    flipped: bool


@dataclass
class FlagMeasure:
    """Seeded labels judged (``items``; ``missing``: not found in the store), flips among
    them, labels flagged, flips caught and correct labels flagged."""

    items: int
    flips: int
    flagged: int
    caught: int
    correct_flagged: int
    missing: int = 0

    @property
    def precision(self) -> float | None:
        return round(self.caught / self.flagged, 4) if self.flagged else None

    @property
    def recall(self) -> float | None:
        return round(self.caught / self.flips, 4) if self.flips else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"precision": self.precision, "recall": self.recall}

    def line(self) -> str:
        """One line for a summary."""
        show = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        return (
            f"{self.caught} of {self.flips} seeded flips caught (recall {show(self.recall)}), "
            f"{self.correct_flagged} correct labels flagged (precision {show(self.precision)})"
        )


def tally(pairs: Iterable[tuple[bool, bool]]) -> FlagMeasure:
    """:class:`FlagMeasure` of ``(flipped, flagged)`` pairs."""
    measure = FlagMeasure(0, 0, 0, 0, 0)
    for flipped, flagged in pairs:
        measure.items += 1
        measure.flips += flipped
        measure.flagged += flagged
        measure.caught += flipped and flagged
        measure.correct_flagged += flagged and not flipped
    return measure


def measure_stored_flags(settings: Settings, seeded: Sequence[SeededLabel]) -> FlagMeasure:
    """Precision and recall of the flags stored for ``seeded`` labels (each distinct
    (pair, label) once; one not in the store is counted as ``missing``)."""
    from citeops.tasks.ingest.dedupe import pair_key
    from citeops.tasks.store.feedback_quality import flags_of
    from citeops.tasks.store.schema import open_store

    keyed = {(pair_key(s.claim, s.evidence), s.label): s.flipped for s in seeded}
    with open_store(settings) as engine, engine.connect() as conn:
        flags = flags_of(conn, (key for key, _ in keyed))
    measure = tally((flipped, flags[key]) for key, flipped in keyed.items() if key in flags)
    measure.missing = sum(key not in flags for key in keyed)
    return measure


def flip_label(gold: str, rng: random.Random, share: float) -> str:
    """The demo's noisy user: the gold label, or with probability ``share`` another one."""
    if rng.random() < share:
        return rng.choice([label for label in LABELS if label != gold])
    return gold


def measure_on_seeded_flips(
    scorer: Scorer,
    examples: Sequence[Example],
    share: float,
    seed: int,
    rule: Rule = DEFAULT_RULE,
    min_wrong: float = MIN_WRONG,
) -> FlagMeasure:
    """Flip a seeded ``share`` of ``examples``' gold labels as the demo's users do, score
    the pairs with ``scorer`` and flag with the confident-learning ``rule``: its precision
    and recall (the ``label_issue`` reason alone; no client disagreement)."""
    rng = random.Random(seed)
    given = [flip_label(ex.label_name, rng, share) for ex in examples]
    probs = scorer([ex.claim for ex in examples], [ex.evidence for ex in examples])
    ids = np.array([LABEL2ID[g] for g in given])
    issues = set(find_label_issues(probs, ids, rule, min_wrong).tolist())
    return tally(
        (label != ex.label_name, i in issues)
        for i, (ex, label) in enumerate(zip(examples, given, strict=True))
    )
