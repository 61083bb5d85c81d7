"""Score the curated feedback for how likely each label is wrong; flag, and judge clients.

Two signals, each a flag reason:

- ``label_issue``: a confident-learning rule (:mod:`~citeops.tasks.feedback.confident`,
  ``feedback.flag_rule``) on the champion's probabilities. A row is scored once, by the
  champion of the time, before any retraining learns from it (the monitor flow scores
  right after ingesting), so the probabilities are out-of-sample; the rule runs over all
  rows scored by the same model version, so its per-class thresholds rest on every such
  row, not one batch.
- ``client_disagreement``: several authenticated, not excluded clients labelled the same
  pair (normalised claim + evidence hash) differently: the labels given by fewer distinct
  clients than the most given one are suspect (a tie flags nothing; ``ingest.conflict_rule``
  still resolves it). A client counts once per label, however many lines it sent.

Flagged rows stay in the store with the reason; training and the trigger leave them out
(unless ``feedback.use_flagged``). Per client: lines, share of lines flagged, agreement
with the model's confident predictions and with other clients; a client with at least
``feedback.min_client_items`` lines and a flagged share above ``feedback.max_flagged_share``
is suspect and, with ``feedback.auto_exclude``, excluded (reversible: ``citeops feedback
include``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from citeops.tasks.data.multivers import LABEL2ID, LABELS
from citeops.tasks.feedback.confident import (
    DEFAULT_RULE,
    MIN_WRONG,
    Rule,
    confident_classes,
    find_label_issues,
)
from citeops.tasks.feedback.confident import per_class_thresholds as thresholds_of
from citeops.tasks.inference.aliases import CHAMPION, alias_uri
from citeops.tasks.inference.loading import load_verifier
from citeops.tasks.registry.register import get_version_by_alias

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.store.feedback_quality import ClientVote, JudgedRow

log = logging.getLogger(__name__)

LABEL_ISSUE, DISAGREEMENT = "label_issue", "client_disagreement"


class Scorer(Protocol):
    """Class probabilities of (claim, evidence) pairs, columns in :data:`LABELS` order, by
    the model ``version``."""

    version: str

    def __call__(self, claims: Sequence[str], evidences: Sequence[str]) -> np.ndarray: ...


@dataclass
class ChampionScorer:
    """The champion, loaded by its alias URI on PyTorch, as a :class:`Scorer`."""

    verifier: Any  # ClaimVerifier
    version: str
    batch_size: int = 32

    def __call__(self, claims: Sequence[str], evidences: Sequence[str]) -> np.ndarray:
        probs = self.verifier.predict_proba(claims, evidences, batch_size=self.batch_size)
        order = [list(self.verifier.labels).index(label) for label in LABELS]
        return probs[:, order]


def champion_scorer(settings: Settings) -> ChampionScorer | None:
    """The champion as a scorer, or None when there is no champion yet.

    Raises:
        ModelLoadError: the champion's files cannot be loaded.
    """

    version = get_version_by_alias(settings, CHAMPION)
    if version is None:
        return None
    verifier = load_verifier(alias_uri(settings, CHAMPION), settings)
    return ChampionScorer(
        verifier, verifier.model_version or version, settings.feedback.score_batch_size
    )


# ---- the verdict on each row ---------------------------------------------------------------
@dataclass
class Verdict:
    """Flag reasons per row id (``None``: not flagged) and, for model-scored rows, the
    model's confident label (``None``: no class reached its threshold)."""

    reasons: dict[int, str | None]
    confident: dict[int, str | None]


def label_issues(
    rows: Sequence[JudgedRow], rule: Rule = DEFAULT_RULE, min_wrong: float = MIN_WRONG
) -> tuple[set[int], dict[int, str | None]]:
    """Row ids that are label issues by ``rule`` (``feedback.flag_rule``, with
    ``feedback.flag_min_wrong``), and each scored row's confident label; the rule runs
    separately over the rows of each scoring model version."""
    groups: dict[str, list[JudgedRow]] = defaultdict(list)
    for row in rows:
        if row.label_probs is not None and row.scored_by is not None:
            groups[row.scored_by].append(row)
    issues: set[int] = set()
    confident: dict[int, str | None] = {}
    for group in groups.values():
        probs = np.array([[row.label_probs[label] for label in LABELS] for row in group])
        given = np.array([LABEL2ID[row.user_label] for row in group])
        issues.update(group[i].id for i in find_label_issues(probs, given, rule, min_wrong))
        best_of = confident_classes(probs, thresholds_of(probs, given))
        for row, best in zip(group, best_of, strict=True):
            confident[row.id] = LABELS[best] if best >= 0 else None
    return issues, confident


def minority_labels(votes: Iterable[ClientVote]) -> set[tuple[str, str]]:
    """``(pair_key, label)`` given by fewer distinct clients than the pair's most given
    label, among pairs that at least two authenticated, not excluded clients labelled
    differently."""
    clients: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for vote in votes:
        if not vote.excluded:
            clients[vote.pair_key][vote.user_label].add(vote.client_id)
    minority: set[tuple[str, str]] = set()
    for pair_key, by_label in clients.items():
        if len(by_label) < 2:
            continue
        most = max(len(ids) for ids in by_label.values())
        minority.update((pair_key, label) for label, ids in by_label.items() if len(ids) < most)
    return minority


def judge(
    rows: Sequence[JudgedRow],
    votes: Sequence[ClientVote],
    rule: Rule = DEFAULT_RULE,
    min_wrong: float = MIN_WRONG,
) -> Verdict:
    """The flag reasons of every row (``label_issue`` by ``rule``, ``client_disagreement``,
    or both joined by ``+``)."""
    issues, confident = label_issues(rows, rule, min_wrong)
    minority = minority_labels(votes)
    reasons: dict[int, str | None] = {}
    for row in rows:
        found = [LABEL_ISSUE] if row.id in issues else []
        if (row.pair_key, row.user_label) in minority:
            found.append(DISAGREEMENT)
        reasons[row.id] = "+".join(found) or None
    return Verdict(reasons, confident)


# ---- clients -------------------------------------------------------------------------------
@dataclass
class ClientQuality:
    """One authenticated client's feedback lines and how trustworthy they look."""

    client_id: str
    lines: int = 0
    rows: int = 0
    flagged_lines: int = 0
    model_judged: int = 0  # lines where the model's prediction was confident
    model_agree: int = 0  # ... and equal to the client's label
    peer_judged: int = 0  # lines on pairs other clients labelled too
    peer_agree: int = 0  # ... with a label another client also gave
    excluded: bool = False
    suspect: bool = False
    auto_excluded: bool = False

    @property
    def flagged_share(self) -> float:
        return self.flagged_lines / self.lines if self.lines else 0.0

    def to_dict(self) -> dict[str, Any]:
        rate = lambda part, whole: round(part / whole, 6) if whole else None  # noqa: E731
        return asdict(self) | {
            "flagged_share": round(self.flagged_share, 6),
            "model_agreement": rate(self.model_agree, self.model_judged),
            "peer_agreement": rate(self.peer_agree, self.peer_judged),
        }


def client_quality(
    rows: Sequence[JudgedRow],
    votes: Sequence[ClientVote],
    verdict: Verdict,
    max_flagged_share: float,
    min_client_items: int,
) -> list[ClientQuality]:
    """Per client (most lines first): volume, flagged share, agreement with the model's
    confident predictions and with other not excluded clients, and whether it is suspect
    (at least ``min_client_items`` lines, flagged share above ``max_flagged_share``)."""
    row_of = {(row.pair_key, row.user_label): row for row in rows}
    labels_by: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for vote in votes:
        if not vote.excluded:
            labels_by[vote.pair_key][vote.client_id].add(vote.user_label)
    found: dict[str, ClientQuality] = {}
    for vote in votes:
        row = row_of.get((vote.pair_key, vote.user_label))
        if row is None:  # a leaked row: not judged
            continue
        client = found.setdefault(vote.client_id, ClientQuality(vote.client_id))
        client.excluded = vote.excluded
        client.lines += vote.votes
        client.rows += 1
        client.flagged_lines += vote.votes if verdict.reasons.get(row.id) else 0
        if (label := verdict.confident.get(row.id)) is not None:
            client.model_judged += vote.votes
            client.model_agree += vote.votes if label == vote.user_label else 0
        others = {c: ls for c, ls in labels_by[vote.pair_key].items() if c != vote.client_id}
        if others:
            client.peer_judged += vote.votes
            same = any(vote.user_label in ls for ls in others.values())
            client.peer_agree += vote.votes if same else 0
    for client in found.values():
        client.suspect = (
            client.lines >= min_client_items and client.flagged_share > max_flagged_share
        )
    return sorted(found.values(), key=lambda c: (-c.lines, c.client_id))


def stored_client_quality(settings: Settings) -> list[ClientQuality]:
    """:func:`client_quality` from the flags the last scoring run stored (``citeops
    feedback clients``); changes nothing."""
    from citeops.tasks.store.feedback_quality import client_votes, rows_to_judge
    from citeops.tasks.store.schema import open_store

    cfg = settings.feedback
    with open_store(settings) as engine, engine.connect() as conn:
        rows, votes = rows_to_judge(conn), client_votes(conn)
    confident = label_issues(rows, cfg.flag_rule, cfg.flag_min_wrong)[1]
    verdict = Verdict({row.id: row.flag_reason for row in rows}, confident)
    return client_quality(rows, votes, verdict, cfg.max_flagged_share, cfg.min_client_items)


# ---- the stage -----------------------------------------------------------------------------
@dataclass
class QualityReport:
    """What a scoring run did: rows newly scored (and by which model, or why none), rows
    judged and flagged (per reason), the clients, and those excluded by this run."""

    scored: int
    model_version: str | None
    rows: int
    flagged: int
    reasons: dict[str, int]
    clients: list[ClientQuality]
    auto_excluded: list[str] = field(default_factory=list)
    unscored: int = 0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"clients": [client.to_dict() for client in self.clients]}

    def summary(self) -> dict[str, Any]:
        """Without the per-client list: the suspect clients only."""
        suspects = [c.to_dict() for c in self.clients if c.suspect]
        return {k: v for k, v in self.to_dict().items() if k != "clients"} | {
            "suspect_clients": suspects
        }


def _score_new_rows(settings: Settings, scorer: Scorer | None) -> tuple[int, int, str | None]:
    """Score the rows no model has scored yet (newest first, ``feedback.score_max_rows``);
    returns ``(scored, still unscored, note)``."""
    from citeops.tasks.store.feedback_quality import save_scores, unscored_pairs
    from citeops.tasks.store.schema import open_store

    with open_store(settings) as engine:
        with engine.connect() as conn:
            pending = unscored_pairs(conn)
        if not pending:
            return 0, 0, None
        if scorer is None:
            return 0, len(pending), "no champion: label issues are not scored yet"
        batch = pending[: settings.feedback.score_max_rows]
        probs = scorer([row.claim for row in batch], [row.evidence for row in batch])
        scores = {
            row.id: dict(zip(LABELS, p, strict=True)) for row, p in zip(batch, probs, strict=True)
        }
        with engine.begin() as conn:
            save_scores(conn, scores, {row.id: row.user_label for row in batch}, scorer.version)
    return len(batch), len(pending) - len(batch), None


def _judge_store(settings: Settings) -> tuple[list[JudgedRow], Verdict, list[ClientQuality]]:
    """Judge every row and client from the store, and store the rows' flags."""
    from citeops.tasks.store.feedback_quality import client_votes, rows_to_judge, save_flags
    from citeops.tasks.store.schema import open_store

    cfg = settings.feedback
    with open_store(settings) as engine, engine.begin() as conn:
        rows, votes = rows_to_judge(conn), client_votes(conn)
        verdict = judge(rows, votes, cfg.flag_rule, cfg.flag_min_wrong)
        changed = {
            r.id: verdict.reasons[r.id] for r in rows if verdict.reasons[r.id] != r.flag_reason
        }
        save_flags(conn, changed)
    clients = client_quality(rows, votes, verdict, cfg.max_flagged_share, cfg.min_client_items)
    return rows, verdict, clients


def _exclude_suspects(settings: Settings, clients: Sequence[ClientQuality]) -> list[str]:
    """Exclude suspect clients (``feedback.auto_exclude``) that are not excluded yet and
    that no operator let back in; returns their ids."""
    from citeops.tasks.store.feedback_quality import readmitted_clients
    from citeops.tasks.store.queries import exclude_client
    from citeops.tasks.store.schema import open_store

    if not settings.feedback.auto_exclude:
        return []
    with open_store(settings) as engine, engine.connect() as conn:
        spared = readmitted_clients(conn)
    excluded = []
    for client in clients:
        if client.suspect and not client.excluded and client.client_id not in spared:
            note = (
                f"auto: {client.flagged_share:.0%} of {client.lines} lines flagged "
                f"(feedback.max_flagged_share {settings.feedback.max_flagged_share})"
            )
            exclude_client(settings, client.client_id, note)
            excluded.append(client.client_id)
            log.warning("feedback quality: client %r excluded (%s)", client.client_id, note)
    return excluded


def score_feedback(settings: Settings, scorer: Scorer | None = None) -> QualityReport:
    """Score new feedback with ``scorer`` (default: the champion, when there is one), flag
    likely wrong labels, judge clients and exclude suspect ones (``feedback.auto_exclude``);
    the store keeps the scores and flags. Idempotent: a second run scores nothing new and
    flags the same rows.

    Raises:
        StoreError: the curated store cannot be reached.
        ModelLoadError: the champion's files cannot be loaded.
    """
    if scorer is None:
        scorer = champion_scorer(settings)
    scored, unscored, note = _score_new_rows(settings, scorer)
    rows, verdict, clients = _judge_store(settings)
    excluded = _exclude_suspects(settings, clients)
    if excluded:  # their votes no longer count as disagreement: judge again
        rows, verdict, clients = _judge_store(settings)
        for client in clients:
            client.auto_excluded = client.client_id in excluded
    from citeops.tasks.store.feedback_quality import flag_counts

    flagged = [reason for reason in verdict.reasons.values() if reason]
    report = QualityReport(
        scored=scored,
        model_version=scorer.version if scorer else None,
        rows=len(rows),
        flagged=len(flagged),
        reasons=flag_counts(flagged),
        clients=clients,
        auto_excluded=excluded,
        unscored=unscored,
        note=note,
    )
    log.info(
        "feedback quality: %d rows scored by %s, %d of %d rows flagged %s, %d suspect clients%s",
        scored,
        report.model_version or "no model",
        report.flagged,
        report.rows,
        report.reasons,
        sum(c.suspect for c in clients),
        f" ({note})" if note else "",
    )
    return report
