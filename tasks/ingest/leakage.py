"""The leakage guard: claims of the benchmark test sets, normalised, so feedback that would
leak a test claim into training is marked and never trained on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from citeops.tasks.data.multivers import normalise_claim, read_split

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


def benchmark_test_claims(settings: Settings) -> frozenset[str]:
    """Normalised claims of ``ingest.leakage_split`` of every ``ingest.leakage_datasets``.

    Raises:
        DataFileError: a dataset is missing (the guard never runs blind); the message says
            how to fetch it.
    """
    claims: set[str] = set()
    for dataset in settings.ingest.leakage_datasets:
        for example in read_split(settings.data_dir, dataset, settings.ingest.leakage_split):
            claims.add(normalise_claim(example.claim))
    return frozenset(claims)
