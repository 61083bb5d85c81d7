"""Feedback in the curated store by model version and by client (``citeops feedback stats``).

Counts are feedback **lines** (a row's votes: the line that created it plus its
duplicates), the unit the endpoint's ``citeops_feedback_total`` counts, so the figures
here and on the dashboard can be compared. Per model version: lines, rows, the label mix
and the agreement of users with the model (lines whose user label equals the model's
prediction, over lines whose prediction is known). A row carries the model version and
prediction of its first line; duplicates are attributed to them too.

Per client: the same figures over the lines each authenticated client sent
(``feedback_clients``); lines that name no client are shown as one ``client_id: null``
entry, so the clients' lines add up to all lines. Excluded clients are marked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Select, and_, func, select
from sqlalchemy.engine import Connection

from citeops.tasks.data.multivers import LABELS
from citeops.tasks.store.feedback_quality import active_exclusions
from citeops.tasks.store.schema import feedback, feedback_clients, open_store

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


@dataclass
class FeedbackTally:
    """Lines, rows, label mix and agreement of one group of feedback lines."""

    lines: int = 0
    rows: int = 0
    labels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    judged: int = 0  # lines whose model prediction is known
    agree: int = 0  # ... and equal to the user's label

    def add(self, user_label: str, prediction: str | None, lines: int, rows: int) -> None:
        """Count ``lines`` lines (in ``rows`` rows) labelled ``user_label`` by users, of
        which the model predicted ``prediction`` (None: not known)."""
        self.lines += lines
        self.rows += rows
        self.labels[user_label] = self.labels.get(user_label, 0) + lines
        if prediction is not None:
            self.judged += lines
            self.agree += lines if prediction == user_label else 0

    @property
    def agreement(self) -> float | None:
        """The share of judged lines where user and model agree; None when none is judged."""
        return round(self.agree / self.judged, 6) if self.judged else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "rows": self.rows,
            "labels": dict(self.labels),
            "judged": self.judged,
            "agree": self.agree,
            "agreement": self.agreement,
        }


def predicted_label(stored: str | None) -> str | None:
    """The label a stored ``prediction`` names: the JSON of a label (``"SUPPORT"``) or of
    probabilities (``{"SUPPORT": 0.7, ...}``, the most likely one); None when absent or
    unreadable."""
    if not stored:
        return None
    try:
        value = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict) and value:
        try:
            value = max(value, key=lambda label: float(value[label]))
        except (TypeError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    return value.strip().upper() or None


def _tallies(rows: Iterable[Any], key_of: Any) -> dict[Any, FeedbackTally]:
    """Rows of ``(key..., user_label, prediction, lines, rows)`` summed per ``key_of(row)``."""
    tallies: dict[Any, FeedbackTally] = defaultdict(FeedbackTally)
    for row in rows:
        tallies[key_of(row)].add(
            row.user_label, predicted_label(row.prediction), int(row.lines), int(row.rows)
        )
    return tallies


def _grouped(key: Any, votes: Any) -> Select:
    """``(key, user_label, prediction, lines, rows)`` of feedback rows, lines being the sum
    of ``votes``, grouped by the first three."""
    columns = (key, feedback.c.user_label, feedback.c.prediction)
    lines, rows = func.sum(votes).label("lines"), func.count().label("rows")
    return select(*columns, lines, rows).group_by(*columns)


def by_model_version(conn: Connection) -> list[dict[str, Any]]:
    """Per model version (None: lines that did not name one), most lines first."""
    stmt = _grouped(feedback.c.model_version, feedback.c.votes)
    tallies = _tallies(conn.execute(stmt), lambda row: row.model_version)
    return _ranked("model_version", tallies)


def by_client(conn: Connection) -> list[dict[str, Any]]:
    """Per authenticated client, plus ``client_id: None`` for lines naming none (each
    row's votes less its clients' votes), most lines first; ``excluded`` marks the
    clients ``citeops feedback exclude`` excluded."""
    same_row = and_(
        feedback_clients.c.pair_key == feedback.c.pair_key,
        feedback_clients.c.user_label == feedback.c.user_label,
    )
    named = _grouped(feedback_clients.c.client_id, feedback_clients.c.votes).join_from(
        feedback_clients, feedback, same_row
    )
    tallies = _tallies(conn.execute(named), lambda row: row.client_id)
    client_votes = (
        select(func.coalesce(func.sum(feedback_clients.c.votes), 0))
        .where(same_row)
        .scalar_subquery()
    )
    per_row = select(
        feedback.c.user_label,
        feedback.c.prediction,
        (feedback.c.votes - client_votes).label("unnamed"),
    ).subquery()
    unnamed = (
        select(
            per_row.c.user_label,
            per_row.c.prediction,
            func.sum(per_row.c.unnamed).label("lines"),
            func.count().label("rows"),
        )
        .where(per_row.c.unnamed > 0)
        .group_by(per_row.c.user_label, per_row.c.prediction)
    )
    tallies.update(_tallies(conn.execute(unnamed), lambda _: None))
    excluded = active_exclusions(conn)
    ranked = _ranked("client_id", tallies)
    for entry in ranked:
        entry["excluded"] = entry["client_id"] in excluded
    return ranked


def _ranked(key: str, tallies: dict[Any, FeedbackTally]) -> list[dict[str, Any]]:
    order = sorted(tallies.items(), key=lambda item: (-item[1].lines, str(item[0])))
    return [{key: name, **tally.to_dict()} for name, tally in order]


def feedback_breakdown(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """``{"by_model_version": [...], "by_client": [...]}`` from the curated store, each
    entry with lines, rows, labels, judged, agree and agreement (see the module)."""
    with open_store(settings) as engine, engine.connect() as conn:
        return {"by_model_version": by_model_version(conn), "by_client": by_client(conn)}
