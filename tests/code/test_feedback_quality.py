"""Feedback quality: the confident-learning rule on fixed probabilities, disagreement
between clients, the stage on a fixed feedback file with known flips (keyword pairs whose
right label is known; the probability source is replaced at its boundary, the scorer),
the stage with a real tiny champion, training and the trigger leaving flagged rows out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from citeops.configs.settings import load_settings
from citeops.tasks.data.multivers import LABEL2ID, LABELS
from citeops.tasks.feedback.confident import (
    RULES,
    calibrated_joint,
    confident_joint,
    estimated_issue_counts,
    find_label_issues,
    noise_transitions,
    per_class_thresholds,
    wrong_label_probability,
)
from citeops.tasks.feedback.measure import SeededLabel, measure_stored_flags, tally
from citeops.tasks.feedback.quality import minority_labels, score_feedback
from citeops.tasks.ingest.pipeline import ingest
from citeops.tasks.store.feedback_quality import ClientVote
from citeops.tasks.store.queries import feedback_counts, training_feedback_with_left_out
from citeops.tasks.store.schema import feedback, open_store
from citeops.tasks.train.training_set import build_training_set, rows_digest
from citeops.tasks.trigger.decision import should_retrain
from tests.feedback_support import KeywordScorer, flipped, keyword_pair
from tests.ingest_support import feedback_line, write_part

# given labels and probabilities worked by hand (columns SUPPORT, NEI, REFUTE)
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # 0 given SUPPORT: right
        [0.80, 0.10, 0.10],  # 1 given SUPPORT: right
        [0.10, 0.85, 0.05],  # 2 given SUPPORT: NEI is confident -> issue
        [0.10, 0.80, 0.10],  # 3 given NEI: right
        [0.20, 0.70, 0.10],  # 4 given NEI: below every threshold -> no verdict
        [0.30, 0.30, 0.40],  # 5 given REFUTE: REFUTE reaches its threshold
        [0.65, 0.05, 0.30],  # 6 given REFUTE: SUPPORT is confident -> issue
    ]
)
GIVEN = np.array([0, 0, 0, 1, 1, 2, 2])


def test_per_class_thresholds_are_mean_self_confidence() -> None:
    thresholds = per_class_thresholds(PROBS, GIVEN)
    assert thresholds == pytest.approx([0.6, 0.75, 0.35])
    assert per_class_thresholds(PROBS[:3], GIVEN[:3])[1:].tolist() == [np.inf, np.inf]


def test_the_confident_joint_its_calibration_and_the_noise_matrix_by_hand() -> None:
    # confident classes: S, S, N, N, none, R, S
    assert confident_joint(PROBS, GIVEN).tolist() == [[2, 1, 0], [0, 1, 0], [1, 0, 1]]
    # rows rescaled to the labels given (3, 2, 2), then to 1: row NEI's one item counts 2
    assert calibrated_joint(confident_joint(PROBS, GIVEN), GIVEN) * 7 == pytest.approx(
        np.array([[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    )
    assert estimated_issue_counts(PROBS, GIVEN).tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]
    # P(given | true): true SUPPORT is given SUPPORT 2 of 3 times and REFUTE 1 of 3
    assert noise_transitions(PROBS, GIVEN) == pytest.approx(
        np.array([[2 / 3, 0, 1 / 3], [1 / 3, 2 / 3, 0], [0, 0, 1]])
    )
    # item 2 (given SUPPORT): 0.85 * 1/3 for NEI against 0.10 * 2/3 for SUPPORT
    # item 6 (given REFUTE): 0.65 * 1/3 for SUPPORT against 0.30 * 1 for REFUTE
    wrong = wrong_label_probability(PROBS, GIVEN)
    assert wrong[2] == pytest.approx(0.2833 / 0.35, abs=1e-3)
    assert wrong[6] == pytest.approx(0.2167 / 0.5167, abs=1e-3)
    assert wrong[[0, 1, 3, 4, 5]].max() < 0.25


def test_label_issues_on_fixed_probabilities_by_rule() -> None:
    # the model prefers another label for items 2 and 6 (normalised margin -0.75, -0.35)
    for rule in ("off_diagonal", "prune_by_noise_rate", "both"):
        assert find_label_issues(PROBS, GIVEN, rule).tolist() == [2, 6]
    # the default, posterior: item 6's REFUTE is more likely right than wrong (0.42)
    assert find_label_issues(PROBS, GIVEN).tolist() == [2]
    # nor at min_wrong 0.4: one of the two REFUTE labels looks wrong (base rate 0.5), and
    # the model's probabilities do not raise item 6's chance above it
    assert find_label_issues(PROBS, GIVEN, "posterior", min_wrong=0.4).tolist() == [2]
    # a model with no opinion flags nothing, however noisy a class looks
    flat = np.full((7, 3), 1 / 3) + np.linspace(-1e-3, 1e-3, 21).reshape(7, 3)
    assert find_label_issues(flat / flat.sum(axis=1, keepdims=True), GIVEN).tolist() == []
    # another class above its threshold but less likely than the given label: no issue
    probs = np.array([[0.5, 0.0, 0.5], [0.9, 0.0, 0.1], [0.0, 0.0, 1.0], [0.45, 0.0, 0.55]])
    for rule in RULES:
        assert find_label_issues(probs, np.array([0, 0, 2, 2]), rule).tolist() == []
        assert find_label_issues(np.zeros((0, 3)), np.zeros(0), rule).tolist() == []
    with pytest.raises(ValueError):
        find_label_issues(PROBS, np.array([0, 3, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="unknown rule"):
        find_label_issues(PROBS, GIVEN, "cleanlab")  # type: ignore[arg-type]


def test_a_weak_models_mistakes_are_not_flagged_by_the_posterior_rule() -> None:
    """Six right SUPPORT labels the model calls REFUTE (0.60 against 0.35: its own
    mistakes) and two flipped NEI labels it calls SUPPORT at 0.90. All eight are off the
    confident joint's diagonal, so every paper rule flags them; the posterior weighs them
    by how often each label is given for each true class (SUPPORT right 30 of 32 times)
    and flags the two flips only (P(wrong) 0.65 against 0.41)."""
    mistakes = [[0.35, 0.05, 0.60]] * 6
    flips = [[0.90, 0.03, 0.07]] * 2
    sure = [[0.90, 0.05, 0.05]] * 30 + [[0.30, 0.10, 0.60]] * 10 + [[0.05, 0.90, 0.05]] * 3
    probs = np.array(mistakes + flips + sure)
    given = np.array([0] * 6 + [1] * 2 + [0] * 30 + [2] * 10 + [1] * 3)
    for rule in ("off_diagonal", "prune_by_noise_rate", "both"):
        assert sorted(find_label_issues(probs, given, rule).tolist()) == list(range(8))
    assert find_label_issues(probs, given).tolist() == [6, 7]
    assert wrong_label_probability(probs, given)[:8] == pytest.approx(
        [0.407] * 6 + [0.652] * 2, abs=1e-3
    )


def test_the_minority_of_clients_on_a_pair_is_suspect() -> None:
    votes = [
        ClientVote("p1", "SUPPORT", "alice", 1, False),
        ClientVote("p1", "SUPPORT", "bob", 1, False),
        ClientVote("p1", "REFUTE", "mallory", 9, False),  # many lines are still one client
        ClientVote("p2", "NEI", "alice", 1, False),  # a tie: no minority
        ClientVote("p2", "REFUTE", "bob", 1, False),
        ClientVote("p3", "NEI", "alice", 1, False),
        ClientVote("p3", "SUPPORT", "eve", 1, True),  # excluded: does not count
    ]
    assert minority_labels(votes) == {("p1", "REFUTE")}


def test_tally_precision_and_recall() -> None:
    measure = tally([(True, True), (True, False), (False, True), (False, False), (True, True)])
    assert (measure.flips, measure.flagged, measure.caught, measure.correct_flagged) == (3, 3, 2, 1)
    assert measure.precision == pytest.approx(2 / 3, abs=1e-4) and measure.recall == 0.6667


def known_feedback(root: Path) -> tuple[list[dict], set[tuple[str, str]]]:
    """60 keyword pairs from three clients, every tenth label flipped, plus one pair where
    two clients agree and a third disagrees; returns the lines and the (claim, label) of
    the rows that must be flagged, with their reason."""
    lines, expected = [], set()
    for i in range(60):
        right = LABELS[i % 3]
        claim, evidence = keyword_pair(i, right)
        label = flipped(right, i) if i % 10 == 3 else right
        if label != right:
            expected.add((claim, label))
        client = ("alice", "bob", "carol")[i % 3]
        lines.append(
            feedback_line(claim=claim, evidence=evidence, user_label=label, client_id=client)
        )
    shared = "Compound 99 has no effect on sleep.", "Trial 99 found nothing on the question."
    for client, label in (("alice", "NEI"), ("bob", "NEI"), ("carol", "SUPPORT")):
        line = dict(claim=shared[0], evidence=shared[1], user_label=label, client_id=client)
        lines.append(feedback_line(**line, datetime="2026-01-05T11:00:00Z"))
    write_part(root, "feedback", "2026-01-05", "a.jsonl", lines)
    return lines, expected


def flagged_rows(settings) -> dict[tuple[str, str], str]:  # noqa: ANN001
    with open_store(settings) as engine, engine.connect() as conn:
        stmt = select(feedback.c.claim, feedback.c.user_label, feedback.c.flag_reason)
        rows = conn.execute(stmt.where(feedback.c.flagged.is_(True)))
        return {(r.claim, r.user_label): r.flag_reason for r in rows}


def test_known_flips_give_the_known_flag_set_and_stay_out_of_training(
    citeops_env: Path,
) -> None:
    root = citeops_env / "logs"
    lines, expected = known_feedback(root)
    settings = load_settings(
        trigger={"min_new_feedback": 55},
        retrain={"holdout_share": 0.0},
        train={"datasets": ["scifact"]},
        feedback={"min_client_items": 10, "max_flagged_share": 0.5},
    )
    ingest(settings)
    before = feedback_counts(settings, None)
    assert before["accepted"] == before["trusted"] == 60  # the disputed pair is in conflict
    assert should_retrain(settings, record=False).retrain is True

    scorer = KeywordScorer()
    report = score_feedback(settings, scorer)
    shared = "Compound 99 has no effect on sleep."
    flags = flagged_rows(settings)
    assert set(flags) == expected | {(shared, "SUPPORT")}
    assert flags[(shared, "SUPPORT")] == "client_disagreement"
    assert {flags[key] for key in expected} == {"label_issue"}
    assert report.scored == 62 and report.model_version == "keyword-oracle"
    assert report.reasons == {"client_disagreement": 1, "label_issue": 6}
    assert report.auto_excluded == [] and not any(c.suspect for c in report.clients)
    alice = next(c for c in report.clients if c.client_id == "alice")
    assert alice.peer_judged == 1 and alice.peer_agree == 1  # agrees with bob on pair 99

    # a second run scores nothing new and flags the same rows
    again = score_feedback(settings, scorer)
    assert again.scored == 0 and flagged_rows(settings) == flags and scorer.calls == 1

    # the 6 flipped rows leave the count; the disputed pair stays in conflict
    assert feedback_counts(settings, None) == {
        "accepted": 60,
        "unflagged": 54,
        "authenticated": 54,
        "from_non_excluded_clients": 54,
        "trusted": 54,
    }
    decision = should_retrain(settings, record=False)
    assert decision.retrain is False and decision.inputs["feedback_counts"]["trusted"] == 54

    examples, left_out = training_feedback_with_left_out(settings)
    assert {(e.claim, e.label_name) for e in examples}.isdisjoint(set(flags))
    assert len(examples) == 55 and left_out["flagged"] == 7  # 54 + the pair's majority
    assert left_out["flagged_label_issue"] == 6 and left_out["flagged_client_disagreement"] == 1
    data = build_training_set(settings)
    # hold-out share 0: every usable example is trained on, no flagged one
    assert data.digests["feedback-train"] == rows_digest(examples)
    assert data.left_out_params()["feedback_left_out_flagged"] == 7
    with_flagged = load_settings(
        retrain={"holdout_share": 0.0},
        train={"datasets": ["scifact"]},
        feedback={"use_flagged": True},
    )
    assert (
        build_training_set(with_flagged).digests["feedback-train"]
        != (data.digests["feedback-train"])
    )
    measure = measure_stored_flags(
        settings,
        [
            SeededLabel(line["claim"], line["evidence"], line["user_label"], key in expected)
            for line in lines[:60]
            if (key := (line["claim"], line["user_label"]))
        ],
    )
    assert (measure.precision, measure.recall, measure.missing) == (1.0, 1.0, 0)


def test_the_stage_scores_with_the_registered_champion(
    registered_tiny_model: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The real probability source: the tiny champion loaded by its alias URI."""
    from citeops.flows.cli import main
    from citeops.tasks.registry.register import set_alias

    _, version = registered_tiny_model
    settings = load_settings()
    set_alias(settings, version, "champion")
    root = Path(settings.home) / "logs"
    write_part(
        root,
        "feedback",
        "2026-01-05",
        "a.jsonl",
        [feedback_line(claim=f"Claim {i}", user_label=LABELS[i % 3]) for i in range(12)],
    )
    ingest(settings)
    with pytest.raises(SystemExit) as done:
        main(["feedback", "score", "--json"])
    assert done.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scored"] == 12 and report["model_version"] == version
    with open_store(settings) as engine, engine.connect() as conn:
        rows = conn.execute(select(feedback)).all()
    probs = np.array([[json.loads(r.label_probs)[k] for k in LABELS] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert {r.scored_by for r in rows} == {version}
    given = np.array([LABEL2ID[r.user_label] for r in rows])
    issues = {rows[i].id for i in find_label_issues(probs, given)}
    assert {r.id for r in rows if r.flagged} == issues  # the stored flags follow the rule
    assert all(r.flag_reason == "label_issue" for r in rows if r.flagged)
