"""Deduplication and conflict rules: what each validated line becomes against the store.

Feedback, per line in file order:

- the same normalised claim + evidence + label as a stored row: a **duplicate**; it is not
  stored again but adds a vote to that row (the ``majority`` conflict rule counts votes,
  ``latest`` looks at the latest datetime);
- the same pair as a stored row with another label: stored as a **conflict**, and every row
  of that pair is flagged ``conflict`` (kept out of training until the rule resolves it);
- otherwise **accepted**. A row whose normalised claim is in a benchmark test set is stored
  with ``leaked`` set and never used for training (it is still accepted or a conflict).

Every feedback line that names its authenticated ``client_id`` (accepted, duplicate or
conflict) also adds one vote to that client's row of the pair and label in
``feedback_clients``, so that a client's lines can be counted and excluded later.

Queries: a ``request_id`` already stored (or seen earlier in the object) is a duplicate.

The functions run inside the caller's transaction and write through
:mod:`citeops.tasks.store.writer`, which stores what it is told.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from citeops.tasks.data.multivers import normalise_claim
from citeops.tasks.store.writer import (
    ClientVotes,
    StoreCounts,
    add_client_votes,
    add_votes,
    datetime_param,
    flag_conflicts,
    insert_feedback,
    insert_queries,
    known_labels,
    known_query_keys,
)


def pair_key(claim: str, evidence: str) -> str:
    """Identity of a (claim, evidence) pair: case and whitespace folded, then hashed."""
    text = normalise_claim(claim) + "\x1f" + normalise_claim(evidence)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def add_pair_keys(rows: Sequence[dict[str, Any]], leaked_claims: frozenset[str]) -> None:
    """Give each feedback row its ``pair_key`` and ``leaked`` flag (claim in a benchmark
    test set), both from the normalised texts (:func:`normalise_claim`, inlined here: this
    runs once per line)."""
    blake2b = hashlib.blake2b
    evidence_forms: dict[str, str] = {}  # the same evidence recurs (one paper, many claims)
    for row in rows:
        norm_claim = " ".join(row["claim"].casefold().split())
        evidence = row["evidence"]
        norm_evidence = evidence_forms.get(evidence)
        if norm_evidence is None:
            norm_evidence = evidence_forms[evidence] = " ".join(evidence.casefold().split())
        text = norm_claim + "\x1f" + norm_evidence
        row["pair_key"] = blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        row["leaked"] = norm_claim in leaked_claims


def store_feedback(
    conn: Connection,
    object_id: int,
    rows: Sequence[dict[str, Any]],
    now: datetime,
) -> StoreCounts:
    """Store validated feedback rows (in line order, with :func:`add_pair_keys` applied)
    under the rules above; returns their counts (no lines or quarantined: the caller adds
    those)."""
    counts = StoreCounts()
    if not rows:
        return counts
    known = known_labels(conn, {row["pair_key"] for row in rows})
    dt = datetime_param(conn)
    at = dt(now)
    inserts: list[tuple[Any, ...]] = []
    votes: dict[tuple[str, str], tuple[int, datetime]] = {}  # (pair, label) -> extra, latest
    conflicted: set[str] = set()
    clients: ClientVotes = {}
    for row in rows:
        key, leaked, label = row["pair_key"], row["leaked"], row["user_label"]
        client = row.get("client_id")
        if client:
            _count_client_vote(clients, (key, label, client), row["datetime"])
        labels = known.get(key)
        if labels is not None and label in labels:
            counts.duplicates += 1
            extra, latest = votes.get((key, label), (0, row["datetime"]))
            votes[(key, label)] = (extra + 1, max(latest, row["datetime"]))
            continue
        if labels is None:
            known[key] = {label}
            counts.accepted += 1
            conflict = False
        else:
            labels.add(label)
            conflicted.add(key)
            counts.conflicts += 1
            conflict = True
        counts.leaked += leaked
        when = dt(row["datetime"])
        inserts.append(
            (
                object_id,
                row["line_no"],
                row["claim"],
                row["evidence"],
                label,
                row["model"],
                row["prediction"],
                when,
                when,
                row["request_id"],
                row["model_version"],
                row["slot"],
                key,
                1,
                leaked,
                conflict,
                at,
            )
        )
    insert_feedback(conn, inserts)
    add_votes(conn, votes)
    if conflicted:
        flag_conflicts(conn, conflicted)
    add_client_votes(conn, clients)
    return counts


def _count_client_vote(clients: ClientVotes, key: tuple[str, str, str], when: datetime) -> None:
    """One more line of ``(pair_key, label, client_id)`` at ``when``."""
    known = clients.get(key)
    if known is None:
        clients[key] = (1, when, when)
    else:
        votes, first, last = known
        clients[key] = (votes + 1, min(first, when), max(last, when))


def store_queries(
    conn: Connection, object_id: int, rows: Sequence[dict[str, Any]], now: datetime
) -> StoreCounts:
    """Store validated query rows; a request_id already stored is a duplicate."""
    counts = StoreCounts()
    if not rows:
        return counts
    seen = known_query_keys(conn, dict.fromkeys(row["request_id"] for row in rows))
    dt = datetime_param(conn)
    at = dt(now)
    inserts = []
    for row in rows:
        key = row["request_id"]
        if key in seen:
            counts.duplicates += 1
            continue
        seen.add(key)
        counts.accepted += 1
        inserts.append(
            (
                object_id,
                row["line_no"],
                key,
                key,
                dt(row["datetime"]),
                row["claim"],
                row["evidence"],
                row["model_version"],
                row["slot"],
                row["prediction"],
                orjson.dumps(row["probabilities"]).decode(),
                row["latency_ms"],
                at,
            )
        )
    insert_queries(conn, inserts)
    return counts
