"""Rollback of the last promotion (deployment ``rollback/manual``).

Wiring only: :func:`citeops.tasks.release.lifecycle.rollback_last` does the work and keeps
the record; the retrain lock keeps it apart from a running retrain or promotion.
"""

from __future__ import annotations

from typing import Any

from prefect import flow


@flow(name="rollback")
def rollback() -> dict[str, Any]:
    """Undo the last promotion on every endpoint and put the aliases back."""
    from citeops.flows.logs import stage_logs
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.release.lifecycle import load, rollback_last
    from citeops.tasks.store.promotions import hold_lock

    settings = use_mlflow(load())
    with stage_logs(), hold_lock(settings):
        return rollback_last(settings).to_dict()
