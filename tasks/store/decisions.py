"""Retraining decisions, stored beside the promotion records (``citeops history``).

A decision row says whether the trigger fired, which causes and why, every input the rule
was given, and the retraining flow run it started (or why none was). The trigger
(:mod:`citeops.tasks.trigger.decision`) owns the decision; the store keeps its JSON form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from citeops.tasks.store.schema import (
    open_store,
    retrain_decisions,
    retry_unreachable,
    utc_naive,
)

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

JSON_FIELDS = ("causes", "reasons", "inputs", "deployment")


def save_decision(
    settings: Settings, decision: Mapping[str, Any], mlflow_run_id: str | None = None
) -> int:
    """Store one decision given in its JSON form (``retrain``, ``decided_at`` ISO 8601,
    ``causes``, ``reasons``, ``inputs``, ``deployment``); returns the row id.

    Raises:
        StoreUnreachable: the store stayed unreachable (:func:`retry_unreachable`).
    """
    values: dict[str, Any] = {
        name: None if decision.get(name) is None else json.dumps(decision[name], default=str)
        for name in JSON_FIELDS
    }
    values["decided_at"] = utc_naive(datetime.fromisoformat(decision["decided_at"]))
    values["retrain"] = bool(decision["retrain"])
    values["mlflow_run_id"] = mlflow_run_id
    return retry_unreachable(lambda: _insert_decision(settings, values), "the retrain decision")


def _insert_decision(settings: Settings, values: dict[str, Any]) -> int:
    with open_store(settings) as engine, engine.begin() as conn:
        inserted = conn.execute(insert(retrain_decisions).values(**values))
    return int(inserted.inserted_primary_key[0])


def _from_row(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    for name in JSON_FIELDS:
        data[name] = json.loads(data[name]) if data[name] is not None else None
    data["decided_at"] = data["decided_at"].replace(tzinfo=UTC).isoformat()
    return data


def list_decisions(settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored decisions, newest first, in their JSON form plus ``id`` and
    ``mlflow_run_id``."""
    query = select(retrain_decisions).order_by(retrain_decisions.c.id.desc())
    if limit:
        query = query.limit(limit)
    with open_store(settings) as engine, engine.connect() as conn:
        return [_from_row(row) for row in conn.execute(query)]
