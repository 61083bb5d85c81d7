"""Known (claim, evidence) pairs: serving's smoke checks and the fallback parity sample."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from citeops.tasks.data.multivers import read_split, shuffled
from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

log = logging.getLogger(__name__)

# Known (claim, evidence) pairs: serving's smoke checks, and the parity sample when the
# benchmark data cannot be read (parity still needs some real text)
KNOWN_PAIRS: tuple[tuple[str, str], ...] = (
    (
        "Vitamin D supplementation reduces the risk of fractures in older adults.",
        "In a randomised trial of 2,000 adults over 65, daily vitamin D did not change "
        "fracture rates compared with placebo over five years.",
    ),
    (
        "Aspirin lowers the risk of colorectal cancer.",
        "Long-term daily aspirin use was associated with a lower incidence of colorectal "
        "cancer in pooled cohort data.",
    ),
    (
        "The protein is expressed in neurons.",
        "We describe the crystal structure of a bacterial membrane transporter.",
    ),
    ("Smoking causes lung cancer.", "Smoking is the leading cause of lung cancer."),
)


def parity_pairs(settings: Settings) -> list[tuple[str, str]]:
    """The fixed parity sample: ``registry.parity_pairs`` test pairs of the evaluation datasets
    (seeded shuffle, interleaved across datasets), or built-in pairs without data."""

    per_set: list[list[tuple[str, str]]] = []
    for dataset in settings.evaluate.datasets:
        try:
            examples = shuffled(read_split(settings.data_dir, dataset, "test"), seed=0)
        except CiteopsError as error:
            log.warning("parity sample without %s: %s", dataset, error)
            continue
        per_set.append([(ex.claim, ex.evidence) for ex in examples])
    mixed = [pair for group in zip(*per_set, strict=False) for pair in group] if per_set else []
    pairs = mixed[: settings.registry.parity_pairs]
    return pairs or list(KNOWN_PAIRS)
