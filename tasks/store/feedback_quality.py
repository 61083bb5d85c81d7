"""The feedback-quality columns of the curated store: what the quality stage
(:mod:`citeops.tasks.feedback.quality`) reads and writes.

A feedback row (one (pair, label)) carries the scoring model's probabilities
(``label_probs``, ``label_quality`` = the probability of the user's label, ``scored_by``,
``scored_at``; written once, by the champion of the time, so they stay out-of-sample) and
the verdict (``flagged``, ``flag_reason``: ``label_issue``, ``client_disagreement`` or both
joined by ``+``; recomputed on every run). Leaked rows are never trained on and are not
judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import orjson
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from citeops.tasks.store.schema import (
    excluded_clients,
    feedback,
    feedback_clients,
    open_store,
    utc_now,
)

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


@dataclass(frozen=True)
class JudgedRow:
    """A feedback row as the quality stage sees it."""

    id: int
    pair_key: str
    user_label: str
    votes: int
    label_probs: dict[str, float] | None
    scored_by: str | None
    flag_reason: str | None


@dataclass(frozen=True)
class ClientVote:
    """One authenticated client's lines (``votes``) on one feedback row."""

    pair_key: str
    user_label: str
    client_id: str
    votes: int
    excluded: bool


def rows_to_judge(conn: Connection) -> list[JudgedRow]:
    """Every non-leaked feedback row, oldest first, without its texts."""
    stmt = (
        select(
            feedback.c.id,
            feedback.c.pair_key,
            feedback.c.user_label,
            feedback.c.votes,
            feedback.c.label_probs,
            feedback.c.scored_by,
            feedback.c.flag_reason,
        )
        .where(feedback.c.leaked.is_(False))
        .order_by(feedback.c.id)
    )
    return [
        JudgedRow(
            int(row.id),
            row.pair_key,
            row.user_label,
            int(row.votes),
            orjson.loads(row.label_probs) if row.label_probs else None,
            row.scored_by,
            row.flag_reason,
        )
        for row in conn.execute(stmt)
    ]


class PendingRow(NamedTuple):
    """A row no model has scored yet."""

    id: int
    claim: str
    evidence: str
    user_label: str


def unscored_pairs(conn: Connection) -> list[PendingRow]:
    """The non-leaked rows no model has scored, newest first (the feedback the trigger is
    about to count)."""
    stmt = (
        select(feedback.c.id, feedback.c.claim, feedback.c.evidence, feedback.c.user_label)
        .where(feedback.c.leaked.is_(False), feedback.c.label_probs.is_(None))
        .order_by(feedback.c.id.desc())
    )
    return [PendingRow(int(r.id), r.claim, r.evidence, r.user_label) for r in conn.execute(stmt)]


def save_scores(
    conn: Connection,
    scores: Mapping[int, Mapping[str, float]],
    labels_of: Mapping[int, str],
    model_version: str,
    at: datetime | None = None,
) -> None:
    """Store each row's probabilities ``scores[id]`` ({label: p}) by ``model_version``, with
    ``label_quality`` = the probability of its user label (``labels_of[id]``)."""
    if not scores:
        return
    at = at or utc_now()
    stmt = (
        update(feedback)
        .where(feedback.c.id == bindparam("row_id"))
        .values(
            label_probs=bindparam("probs"),
            label_quality=bindparam("quality"),
            scored_by=bindparam("version"),
            scored_at=bindparam("at"),
        )
    )
    conn.execute(
        stmt,
        [
            {
                "row_id": row_id,
                "probs": orjson.dumps({k: round(float(v), 6) for k, v in probs.items()}).decode(),
                "quality": round(float(probs[labels_of[row_id]]), 6),
                "version": model_version,
                "at": at,
            }
            for row_id, probs in scores.items()
        ],
    )


def save_flags(conn: Connection, changes: Mapping[int, str | None]) -> None:
    """Set ``flagged`` / ``flag_reason`` of the rows in ``changes`` (``None``: not flagged)."""
    if not changes:
        return
    stmt = (
        update(feedback)
        .where(feedback.c.id == bindparam("row_id"))
        .values(flagged=bindparam("is_flagged"), flag_reason=bindparam("reason"))
    )
    conn.execute(
        stmt,
        [
            {"row_id": row_id, "is_flagged": reason is not None, "reason": reason}
            for row_id, reason in changes.items()
        ],
    )


def client_votes(conn: Connection) -> list[ClientVote]:
    """Every authenticated client's votes per feedback row, with whether it is excluded."""
    excluded = active_exclusions(conn)
    stmt = select(
        feedback_clients.c.pair_key,
        feedback_clients.c.user_label,
        feedback_clients.c.client_id,
        feedback_clients.c.votes,
    ).order_by(feedback_clients.c.id)
    return [
        ClientVote(
            row.pair_key, row.user_label, row.client_id, int(row.votes), row.client_id in excluded
        )
        for row in conn.execute(stmt)
    ]


def active_exclusions(conn: Connection) -> set[str]:
    """Clients excluded now (not let back in)."""
    stmt = select(excluded_clients.c.client_id).where(excluded_clients.c.readmitted_at.is_(None))
    return set(conn.execute(stmt).scalars())


def readmitted_clients(conn: Connection) -> set[str]:
    """Clients an operator let back in: the quality stage never excludes them again."""
    stmt = select(excluded_clients.c.client_id).where(excluded_clients.c.readmitted_at.is_not(None))
    return set(conn.execute(stmt).scalars())


def readmit_client(settings: Settings, client_id: str) -> bool:
    """Let an excluded client back in (``citeops feedback include``): its lines count again,
    and automatic exclusion leaves it alone from now on. False when it was not excluded."""
    mine = excluded_clients.c.client_id == client_id.strip()
    with open_store(settings) as engine, engine.begin() as conn:
        done = conn.execute(
            update(excluded_clients)
            .where(mine, excluded_clients.c.readmitted_at.is_(None))
            .values(readmitted_at=utc_now())
        )
    return bool(done.rowcount)


def flag_counts(reasons: Iterable[str | None]) -> dict[str, int]:
    """``{reason: rows}`` from rows' ``flag_reason`` values (a row flagged for two reasons
    counts in each)."""
    counts: dict[str, int] = {}
    for joined in reasons:
        for reason in filter(None, (joined or "").split("+")):
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def flags_of(conn: Connection, pair_keys: Iterable[str]) -> dict[tuple[str, str], bool]:
    """``(pair_key, user_label) -> flagged`` of the stored rows of ``pair_keys``."""
    keys, found = sorted(set(pair_keys)), {}
    for start in range(0, len(keys), 500):
        stmt = select(feedback.c.pair_key, feedback.c.user_label, feedback.c.flagged).where(
            feedback.c.pair_key.in_(keys[start : start + 500])
        )
        found.update({(r.pair_key, r.user_label): bool(r.flagged) for r in conn.execute(stmt)})
    return found
