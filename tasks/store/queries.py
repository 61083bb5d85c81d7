"""What other stages read from the curated store (plain functions, settings in).

- :func:`load_queries`: production queries (the drift check's current window);
- :func:`accepted_feedback_since`: how much usable new feedback there is (the trigger);
- :func:`training_feedback`: feedback usable for training, as :class:`Example`;
- :func:`mark_training` / :func:`last_training_time`: when the last training run used it;
- :func:`feedback_stats`: a summary of the store (``citeops feedback stats``).

Datetimes in arguments may be aware or naive (naive means UTC); datetimes returned are
aware, in UTC.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection, Engine

from citeops.tasks.data.multivers import LABEL2ID, Example
from citeops.tasks.store.schema import (
    feedback,
    ingest_objects,
    ingest_runs,
    open_store,
    quarantine,
    queries,
    training_marks,
    utc_naive,
    utc_now,
    validation_results,
)

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

QUERY_FIELDS = (
    "request_id",
    "datetime",
    "claim",
    "evidence",
    "model_version",
    "slot",
    "prediction",
    "probabilities",
    "latency_ms",
)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def load_queries(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Stored query-log rows with ``since <= datetime < until``, oldest first.

    Each dict has the query-log fields: request_id, datetime (aware UTC), claim, evidence,
    model_version, slot, prediction, probabilities ({label: p}), latency_ms.
    """
    stmt = select(*(queries.c[name] for name in QUERY_FIELDS)).order_by(
        queries.c.datetime, queries.c.id
    )
    if since is not None:
        stmt = stmt.where(queries.c.datetime >= utc_naive(since))
    if until is not None:
        stmt = stmt.where(queries.c.datetime < utc_naive(until))
    with open_store(settings) as engine, engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(stmt)]
    for row in rows:
        row["datetime"] = _aware(row["datetime"])
        row["probabilities"] = orjson.loads(row["probabilities"])
    return rows


def _usable(since: datetime | None):  # noqa: ANN202 - a SQL expression
    condition = and_(feedback.c.conflict.is_(False), feedback.c.leaked.is_(False))
    if since is not None:
        condition = and_(condition, feedback.c.ingested_at > utc_naive(since))
    return condition


def _count_usable(conn: Connection, since: datetime | None) -> int:
    stmt = select(func.count()).select_from(feedback).where(_usable(since))
    return int(conn.execute(stmt).scalar() or 0)


def accepted_feedback_since(settings: Settings, since: datetime | None) -> int:
    """Feedback rows ingested after ``since`` (all if None) that are neither leaked nor in
    conflict: the new feedback a retraining would learn from."""
    with open_store(settings) as engine, engine.connect() as conn:
        return _count_usable(conn, since)


def mark_training(settings: Settings, at: datetime, note: str | None = None) -> None:
    """Record that a training run used the feedback stored up to ``at``."""
    with open_store(settings) as engine, engine.begin() as conn:
        conn.execute(training_marks.insert().values(at=utc_naive(at), note=note))


def _last_mark(conn: Connection) -> datetime | None:
    return conn.execute(select(func.max(training_marks.c.at))).scalar()


def last_training_time(settings: Settings) -> datetime | None:
    """The latest :func:`mark_training` time (aware UTC), or None if there was none."""
    with open_store(settings) as engine, engine.connect() as conn:
        return _aware(_last_mark(conn))


def new_feedback_since_last_training(engine: Engine) -> int:
    """Usable feedback ingested after the last training mark (all usable if none)."""
    with engine.connect() as conn:
        return _count_usable(conn, _last_mark(conn))


def _resolve(rows: list[Any], rule: str) -> Any | None:
    """The winning row of one conflicting pair under ``rule``, or None (dropped / a tie)."""
    if rule == "drop":
        return None
    if rule == "majority":
        ranked = sorted(rows, key=lambda r: r.votes, reverse=True)
        tie = len(ranked) > 1 and ranked[0].votes == ranked[1].votes
    else:  # latest
        ranked = sorted(rows, key=lambda r: r.last_datetime, reverse=True)
        tie = len(ranked) > 1 and ranked[0].last_datetime == ranked[1].last_datetime
    return None if tie else ranked[0]


def _example(row: Any) -> Example:
    return Example(
        claim=row.claim,
        evidence=row.evidence,
        label=LABEL2ID[row.user_label],
        dataset="feedback",
        split="train",
        claim_id=int(row.id),
    )


def training_feedback(settings: Settings) -> list[Example]:
    """Accepted feedback usable for training, in ingestion order: never leaked rows; for a
    pair with conflicting labels, the one row ``ingest.conflict_rule`` picks (``latest``:
    the label given last; ``majority``: the label with most votes; ties and ``drop``: none).
    """
    columns = (
        feedback.c.id,
        feedback.c.claim,
        feedback.c.evidence,
        feedback.c.user_label,
        feedback.c.pair_key,
        feedback.c.votes,
        feedback.c.last_datetime,
    )
    rule = settings.ingest.conflict_rule
    with open_store(settings) as engine, engine.connect() as conn:
        clean = conn.execute(select(*columns).where(_usable(None)).order_by(feedback.c.id))
        examples = [(row.id, _example(row)) for row in clean]
        groups: dict[str, list[Any]] = defaultdict(list)
        conflicted = select(*columns).where(
            feedback.c.conflict.is_(True), feedback.c.leaked.is_(False)
        )
        for row in conn.execute(conflicted):
            groups[row.pair_key].append(row)
    for rows in groups.values():
        winner = _resolve(rows, rule)
        if winner is not None:
            examples.append((winner.id, _example(winner)))
    examples.sort(key=lambda item: item[0])
    return [example for _, example in examples]


def feedback_stats(settings: Settings) -> dict[str, Any]:
    """A summary of the curated store for ``citeops feedback stats``."""
    with open_store(settings) as engine, engine.connect() as conn:
        scalar = lambda stmt: conn.execute(stmt).scalar() or 0  # noqa: E731
        by_label = dict(
            conn.execute(
                select(feedback.c.user_label, func.count()).group_by(feedback.c.user_label)
            ).all()
        )
        reasons = dict(
            conn.execute(
                select(quarantine.c.reason, func.count())
                .group_by(quarantine.c.reason)
                .order_by(quarantine.c.reason)
            ).all()
        )
        sums = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(ingest_objects.c.lines), 0),
                func.coalesce(func.sum(ingest_objects.c.accepted), 0),
                func.coalesce(func.sum(ingest_objects.c.duplicates), 0),
                func.coalesce(func.sum(ingest_objects.c.conflicts), 0),
                func.coalesce(func.sum(ingest_objects.c.quarantined), 0),
            )
        ).one()
        changed = [
            row.uri
            for row in conn.execute(
                select(ingest_objects.c.uri).where(ingest_objects.c.changed_etag.is_not(None))
            )
        ]
        last_mark = _last_mark(conn)
        stats = {
            "feedback": {
                "rows": int(scalar(select(func.count()).select_from(feedback))),
                "labels": {label: int(by_label.get(label, 0)) for label in LABEL2ID},
                "votes": int(scalar(select(func.sum(feedback.c.votes)))),
                "usable": _count_usable(conn, None),
                "conflict_rows": int(
                    scalar(select(func.count()).where(feedback.c.conflict.is_(True)))
                ),
                "conflict_pairs": int(
                    scalar(
                        select(func.count(func.distinct(feedback.c.pair_key))).where(
                            feedback.c.conflict.is_(True)
                        )
                    )
                ),
                "leaked_rows": int(scalar(select(func.count()).where(feedback.c.leaked.is_(True)))),
                "latest": _aware(conn.execute(select(func.max(feedback.c.datetime))).scalar()),
            },
            "queries": {
                "rows": int(scalar(select(func.count()).select_from(queries))),
                "latest": _aware(conn.execute(select(func.max(queries.c.datetime))).scalar()),
            },
            "quarantine": {"rows": int(sum(reasons.values())), "reasons": reasons},
            "objects": {
                "ingested": int(sums[0]),
                "lines": int(sums[1]),
                "accepted": int(sums[2]),
                "duplicates": int(sums[3]),
                "conflicts": int(sums[4]),
                "quarantined": int(sums[5]),
                "changed_after_ingest": changed,
            },
            "validation": {
                "batches": int(scalar(select(func.count()).select_from(validation_results))),
                "failed_batches": int(
                    scalar(select(func.count()).where(validation_results.c.success.is_(False)))
                ),
            },
            "last_ingest": _aware(
                conn.execute(select(func.max(ingest_runs.c.finished_at))).scalar()
            ),
            "last_training": _aware(last_mark),
            "new_feedback_since_last_training": _count_usable(conn, last_mark),
            "store": engine.url.render_as_string(hide_password=True),
            "checked_at": _aware(utc_now()),
        }
    return stats
