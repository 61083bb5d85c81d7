"""Manual promotion of an existing version (deployment ``promote/manual``).

Wiring only: :func:`citeops.tasks.release.lifecycle.promote_version` does the work and
keeps the record; the retrain lock keeps it apart from a running retrain.
"""

from __future__ import annotations

from typing import Any

from prefect import flow


@flow(name="promote")
def promote(version: int, skip_gate: bool = False, reason: str = "manual") -> dict[str, Any]:
    """Gate an existing registered version against the champion (unless ``skip_gate``,
    recorded as such), deploy it blue-green to every endpoint with a bake, move aliases."""
    from citeops.flows.logs import stage_logs
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.release.lifecycle import load, promote_version
    from citeops.tasks.store.promotions import hold_lock

    settings = use_mlflow(load())
    with stage_logs(), hold_lock(settings):
        return promote_version(settings, str(version), skip_gate, reason).to_dict()
