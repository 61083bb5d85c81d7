"""What other stages read from the curated store (plain functions, settings in).

- :func:`load_queries`: production queries (the drift check's current window);
- :func:`accepted_feedback_since`: how much trusted new feedback there is (the trigger);
- :func:`feedback_counts`: the trigger's count step by step (accepted, unflagged, ...);
- :func:`training_feedback`: feedback usable for training, as :class:`Example`
  (:func:`training_feedback_with_left_out`: and how many rows were left out, why);
- :func:`mark_training` / :func:`last_training_time`: when the last training run used it;
- :func:`feedback_stats`: a summary of the store (``citeops feedback stats``);
- :func:`exclude_client`: ignore one client's feedback lines (``citeops feedback exclude``).

A feedback row's votes are its lines; the lines of authenticated clients are counted per
client in ``feedback_clients``. A client in ``excluded_clients`` no longer counts: a row
whose every vote came from excluded clients is neither trained on nor counted by the
trigger, and the rest lose those votes. Where ``feedback.require_credentials`` is on, the
trigger counts only rows with a vote from a client that is not excluded. A client an
operator let back in (``readmitted_at``) is no longer excluded.

Rows the feedback-quality stage flagged (``flagged``: a likely wrong label) are kept but
neither trained on nor counted by the trigger, unless ``feedback.use_flagged``.

Datetimes in arguments may be aware or naive (naive means UTC); datetimes returned are
aware, in UTC.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.engine import Connection, Engine

from citeops.tasks.data.multivers import LABEL2ID, Example
from citeops.tasks.errors import CiteopsError
from citeops.tasks.logcontract import MAX_META_CHARS
from citeops.tasks.store.schema import (
    excluded_clients,
    feedback,
    feedback_clients,
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


def _usable(since: datetime | None, include_flagged: bool = True):  # noqa: ANN202 - SQL
    condition = and_(feedback.c.conflict.is_(False), feedback.c.leaked.is_(False))
    if not include_flagged:
        condition = and_(condition, feedback.c.flagged.is_(False))
    if since is not None:
        condition = and_(condition, feedback.c.ingested_at > utc_naive(since))
    return condition


def _same_row():  # noqa: ANN202 - a SQL expression
    return and_(
        feedback_clients.c.pair_key == feedback.c.pair_key,
        feedback_clients.c.user_label == feedback.c.user_label,
    )


def _excluded_ids():  # noqa: ANN202 - a SQL expression
    """Clients excluded now (an operator may have let one back in)."""
    return select(excluded_clients.c.client_id).where(excluded_clients.c.readmitted_at.is_(None))


def _counted(authenticated_only: bool):  # noqa: ANN202 - a SQL expression
    """Rows the trigger counts: with a vote of a client that is not excluded
    (``authenticated_only``), else any row not wholly from excluded clients."""
    if authenticated_only:
        return exists().where(_same_row(), feedback_clients.c.client_id.not_in(_excluded_ids()))
    excluded_votes = (
        select(func.coalesce(func.sum(feedback_clients.c.votes), 0))
        .where(_same_row(), feedback_clients.c.client_id.in_(_excluded_ids()))
        .scalar_subquery()
    )
    return feedback.c.votes > excluded_votes


def _count_usable(
    conn: Connection,
    since: datetime | None,
    authenticated_only: bool = False,
    include_flagged: bool = True,
) -> int:
    condition = and_(_usable(since, include_flagged), _counted(authenticated_only))
    stmt = select(func.count()).select_from(feedback).where(condition)
    return int(conn.execute(stmt).scalar() or 0)


def _count(conn: Connection, *conditions: Any) -> int:
    stmt = select(func.count()).select_from(feedback).where(and_(*conditions))
    return int(conn.execute(stmt).scalar() or 0)


def _feedback_counts(conn: Connection, since: datetime | None, settings: Settings) -> dict:
    accepted = _usable(since)
    unflagged = _usable(since, settings.feedback.use_flagged)
    return {
        "accepted": _count(conn, accepted),
        "unflagged": _count(conn, unflagged),
        "authenticated": _count(conn, unflagged, exists().where(_same_row())),
        "from_non_excluded_clients": _count(conn, unflagged, _counted(False)),
        "trusted": _count_usable(
            conn, since, settings.feedback.require_credentials, settings.feedback.use_flagged
        ),
    }


def feedback_counts(settings: Settings, since: datetime | None) -> dict[str, int]:
    """The trigger's count of rows ingested after ``since`` (all if None), step by step:
    ``accepted`` (neither leaked nor in conflict), ``unflagged`` (and not flagged by the
    quality stage, unless ``feedback.use_flagged``), ``authenticated`` (unflagged, with a
    line of an authenticated client), ``from_non_excluded_clients`` (unflagged, not wholly
    from excluded clients) and ``trusted``: what the trigger counts (unflagged, not wholly
    from excluded clients and, where ``feedback.require_credentials`` is on, with a line
    of an authenticated client that is not excluded)."""
    with open_store(settings) as engine, engine.connect() as conn:
        return _feedback_counts(conn, since, settings)


def accepted_feedback_since(settings: Settings, since: datetime | None) -> int:
    """The trusted feedback rows ingested after ``since`` (all if None): the ``trusted``
    count of :func:`feedback_counts`, the new feedback a retraining would learn from.
    Anonymous feedback cannot start a retraining where credentials are required."""
    return feedback_counts(settings, since)["trusted"]


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


def new_feedback_since_last_training(
    engine: Engine, authenticated_only: bool = False, include_flagged: bool = False
) -> int:
    """Usable feedback ingested after the last training mark (all usable if none), counted
    as the trigger counts it (``authenticated_only``: ``feedback.require_credentials``;
    ``include_flagged``: ``feedback.use_flagged``)."""
    with engine.connect() as conn:
        return _count_usable(conn, _last_mark(conn), authenticated_only, include_flagged)


# why a stored feedback row is not trained on (see training_feedback_with_left_out)
LEFT_OUT_REASONS = ("leaked", "flagged", "excluded_client", "conflict")


class _Candidate(NamedTuple):
    """A feedback row as training sees it: votes of excluded clients taken off."""

    id: int
    claim: str
    evidence: str
    user_label: str
    pair_key: str
    votes: int
    last_datetime: datetime


def _excluded_votes(conn: Connection) -> dict[tuple[str, str], int]:
    """``(pair_key, label) -> votes of excluded clients`` (empty while none is excluded)."""
    stmt = (
        select(
            feedback_clients.c.pair_key,
            feedback_clients.c.user_label,
            func.sum(feedback_clients.c.votes),
        )
        .where(feedback_clients.c.client_id.in_(_excluded_ids()))
        .group_by(feedback_clients.c.pair_key, feedback_clients.c.user_label)
    )
    return {(key, label): int(votes) for key, label, votes in conn.execute(stmt)}


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
    """The examples of :func:`training_feedback_with_left_out`."""
    return training_feedback_with_left_out(settings)[0]


def training_feedback_with_left_out(settings: Settings) -> tuple[list[Example], dict[str, int]]:
    """Accepted feedback usable for training, in ingestion order, and the rows left out by
    reason. Left out: ``leaked`` rows; ``flagged`` rows (a likely wrong label, unless
    ``feedback.use_flagged``; also counted per flag reason as ``flagged_<reason>``);
    ``excluded_client`` rows whose every vote came from excluded clients; ``conflict``
    rows that lost their pair's conflict: ``ingest.conflict_rule`` picks one row per pair
    (``latest``: the label given last; ``majority``: the label with most votes not from
    excluded clients; ties and ``drop``: none). A pair whose other labels all came from
    excluded clients, or were flagged, is no longer in conflict.
    """
    columns = (
        feedback.c.id,
        feedback.c.claim,
        feedback.c.evidence,
        feedback.c.user_label,
        feedback.c.pair_key,
        feedback.c.votes,
        feedback.c.last_datetime,
        feedback.c.conflict,
        feedback.c.leaked,
        feedback.c.flagged,
        feedback.c.flag_reason,
    )
    use_flagged = settings.feedback.use_flagged
    left_out: dict[str, int] = dict.fromkeys(LEFT_OUT_REASONS, 0)
    examples: list[tuple[int, Example]] = []
    groups: dict[str, list[_Candidate]] = defaultdict(list)
    with open_store(settings) as engine, engine.connect() as conn:
        excluded = _excluded_votes(conn)
        for row in conn.execute(select(*columns).order_by(feedback.c.id)):
            if row.leaked:
                left_out["leaked"] += 1
            elif row.flagged and not use_flagged:
                left_out["flagged"] += 1
                for reason in filter(None, (row.flag_reason or "").split("+")):
                    left_out[f"flagged_{reason}"] = left_out.get(f"flagged_{reason}", 0) + 1
            elif (votes := row.votes - excluded.get((row.pair_key, row.user_label), 0)) <= 0:
                left_out["excluded_client"] += 1
            elif row.conflict:
                groups[row.pair_key].append(
                    _Candidate(
                        row.id,
                        row.claim,
                        row.evidence,
                        row.user_label,
                        row.pair_key,
                        votes,
                        row.last_datetime,
                    )
                )
            else:
                examples.append((row.id, _example(row)))
    rule = settings.ingest.conflict_rule
    for rows in groups.values():
        winner = rows[0] if len(rows) == 1 else _resolve(rows, rule)
        left_out["conflict"] += len(rows) - (winner is not None)
        if winner is not None:
            examples.append((winner.id, _example(winner)))
    examples.sort(key=lambda item: item[0])
    return [example for _, example in examples], left_out


class UnknownClient(CiteopsError):
    """``citeops feedback exclude`` was given an empty or over-long client id."""


@dataclass(frozen=True)
class Exclusion:
    """What excluding a client did: its lines and rows in the store, the rows that now
    have no vote left (no longer trained on or counted), and whether it was excluded
    already."""

    client_id: str
    lines: int
    rows: int
    rows_unused: int
    already_excluded: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "lines": self.lines,
            "rows": self.rows,
            "rows_unused": self.rows_unused,
            "already_excluded": self.already_excluded,
        }


def exclude_client(settings: Settings, client_id: str, note: str | None = None) -> Exclusion:
    """Mark every feedback line of ``client_id`` (stored now or ingested later) excluded:
    training and the trigger ignore them. Excluding twice changes nothing.

    Raises:
        UnknownClient: ``client_id`` is empty or longer than the log contract allows
            (:data:`~citeops.tasks.logcontract.MAX_META_CHARS`).
    """
    client_id = client_id.strip()
    if not client_id or len(client_id) > MAX_META_CHARS:
        raise UnknownClient(f"--client must be a client id of 1-{MAX_META_CHARS} characters")
    mine = feedback_clients.c.client_id == client_id
    with open_store(settings) as engine, engine.begin() as conn:
        lines, rows = conn.execute(
            select(func.coalesce(func.sum(feedback_clients.c.votes), 0), func.count()).where(mine)
        ).one()
        before = conn.execute(
            select(excluded_clients.c.readmitted_at).where(
                excluded_clients.c.client_id == client_id
            )
        ).first()
        values = {"excluded_at": utc_now(), "lines": int(lines), "note": note}
        if before is None:
            conn.execute(excluded_clients.insert().values(client_id=client_id, **values))
        elif before.readmitted_at is not None:  # let back in once, excluded again
            conn.execute(
                update(excluded_clients)
                .where(excluded_clients.c.client_id == client_id)
                .values(readmitted_at=None, **values)
            )
        unused = conn.execute(
            select(func.count())
            .select_from(feedback)
            .where(exists().where(_same_row(), mine), ~_counted(False))
        ).scalar()
    already = before is not None and before.readmitted_at is None
    return Exclusion(client_id, int(lines), int(rows), int(unused or 0), already)


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
                "flagged_rows": int(
                    scalar(select(func.count()).where(feedback.c.flagged.is_(True)))
                ),
                "unscored_rows": int(
                    scalar(
                        select(func.count()).where(
                            feedback.c.leaked.is_(False), feedback.c.label_probs.is_(None)
                        )
                    )
                ),
                "authenticated_rows": int(
                    scalar(select(func.count()).select_from(feedback).where(_counted(True)))
                ),
                "clients": int(
                    scalar(select(func.count(func.distinct(feedback_clients.c.client_id))))
                ),
                "excluded_clients": sorted(conn.execute(_excluded_ids()).scalars()),
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
            "new_feedback_since_last_training": _count_usable(
                conn,
                last_mark,
                settings.feedback.require_credentials,
                settings.feedback.use_flagged,
            ),
            "trigger_counts": {
                "all": _feedback_counts(conn, None, settings),
                "since_last_training": _feedback_counts(conn, last_mark, settings),
            },
            "store": engine.url.render_as_string(hide_password=True),
            "checked_at": _aware(utc_now()),
        }
    return stats
