"""The review of a running online phase (deployment ``online-review/ab-review``): the A/B
report and, on its verdict, promotion (bake, auto-rollback, aliases, record) or abort.

The daily ``monitor`` flow does the same review after drift and trigger; this flow does
only the review, to run it on demand or more often than daily.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from citeops.flows.params import PromoteOverrides, given


@flow(name="online-review")
def online_review(promote: PromoteOverrides | None = None) -> dict[str, Any]:  # type: ignore[valid-type]
    """Review the online phase citeops started: ``continue``, or promote / abort it.
    ``promote``: overrides of the ``promote`` settings for this run (endpoints, bake)."""
    from citeops.configs.settings import load_settings
    from citeops.flows.logs import stage_logs
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.release.steps import review_online_phase

    overrides = given(promote)
    with stage_logs():
        settings = load_settings(**({"promote": overrides} if overrides else {}))
        return review_online_phase(use_mlflow(settings))
