"""Thin Prefect task over the feedback-quality stage, for the ``monitor`` flow.

It runs the same function as ``citeops feedback score``, after ingestion and before the
trigger decision, so the trigger counts only trustworthy feedback. No caching: the store
changes between runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from citeops.tasks.feedback.quality import score_feedback

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


@task(name="score-feedback", cache_policy=NO_CACHE)
def feedback_quality(settings: Settings) -> dict[str, Any]:
    """:func:`~citeops.tasks.feedback.quality.score_feedback` with the champion; its
    summary (counts, flag reasons, suspect and auto-excluded clients)."""
    return score_feedback(settings).summary()
