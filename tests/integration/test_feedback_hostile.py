"""A hostile client sends 200 flipped labels through the real API (uvicorn, API keys):
after ingestion the trigger would fire on them; the feedback-quality stage flags them,
excludes the client, and neither the retrain's training set nor the trigger sees them.

The probability source is replaced at its boundary (the scorer passed to
``score_feedback``) by a model that is right and confident on these keyword pairs
(:class:`tests.feedback_support.KeywordScorer`): a tiny random champion's probabilities
say nothing about labels. The stage with the real champion is tested in
tests/code/test_feedback_quality.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from citeops.configs.settings import load_settings
from citeops.serving.app import create_app
from citeops.tasks.data.multivers import LABELS
from citeops.tasks.feedback.quality import score_feedback
from citeops.tasks.ingest.pipeline import ingest
from citeops.tasks.store.queries import feedback_counts, training_feedback
from citeops.tasks.train.training_set import build_training_set, rows_digest
from citeops.tasks.trigger.decision import should_retrain
from tests.feedback_support import KeywordScorer, flipped, keyword_pair
from tests.integration.serve_support import running_server, save_tiny_model

pytestmark = pytest.mark.integration
KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-01234567890", "mallory": "m" * 20}


def send(base: str, client: str, pair: tuple[str, str], label: str) -> None:
    body = {"claim": pair[0], "evidence": pair[1], "user_label": label}
    headers = {"Authorization": f"Bearer {KEYS[client]}"}
    answer = httpx.post(base + "/feedback", json=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text


def test_a_hostile_client_is_flagged_excluded_and_kept_out_of_training(
    citeops_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "API_KEYS": ",".join(f"{client}:{key}" for client, key in KEYS.items()),
        "REQUIRE_CREDENTIALS": "true",
        "RATE_PER_MINUTE": "100000",
        "RATE_BURST": "1000",
        "MIN_CLIENT_ITEMS": "50",
        "MAX_FLAGGED_SHARE": "0.5",
        "AUTO_EXCLUDE": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"CITEOPS_FEEDBACK__{name}", value)
    settings = load_settings(
        admin_token="test-admin-token",
        serve={"log_part_max_seconds": 0.3, "precision": "fp32"},
        trigger={"min_new_feedback": 100},
        retrain={"holdout_share": 0.0},
        train={"datasets": ["scifact"]},
    )
    model = save_tiny_model(tmp_path / "model")
    hostile_claims = set()
    with running_server(create_app(settings, str(model))) as base:
        for i in range(60):  # honest users: the right label
            send(base, ("alice", "bob")[i % 2], keyword_pair(i, LABELS[i % 3]), LABELS[i % 3])
        for i in range(100, 300):  # the hostile client: every label flipped
            pair = keyword_pair(i, LABELS[i % 3])
            send(base, "mallory", pair, flipped(LABELS[i % 3], i))
            hostile_claims.add(pair[0])

    assert ingest(settings).to_dict()["accepted"] == 260
    assert should_retrain(settings, record=False).retrain is True  # before: 260 count

    report = score_feedback(settings, KeywordScorer())
    assert report.reasons == {"label_issue": 200} and report.auto_excluded == ["mallory"]
    mallory = next(c for c in report.clients if c.client_id == "mallory")
    assert mallory.flagged_share == 1.0 and mallory.model_agree == 0
    assert all(c.flagged_lines == 0 for c in report.clients if c.client_id != "mallory")

    from citeops.flows.cli import main

    with pytest.raises(SystemExit) as done:
        main(["feedback", "clients", "--json"])
    assert done.value.code == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["suspect"] == ["mallory"]
    entry = next(c for c in listed["clients"] if c["client_id"] == "mallory")
    assert entry["excluded"] is True and entry["lines"] == 200

    counts = feedback_counts(settings, None)
    assert counts["accepted"] == 260 and counts["unflagged"] == counts["trusted"] == 60
    decision = should_retrain(settings, record=False)
    assert decision.retrain is False and decision.inputs["new_feedback"] == 60

    data = build_training_set(settings)
    usable = training_feedback(settings)
    assert len(usable) == 60 and {ex.claim for ex in usable}.isdisjoint(hostile_claims)
    assert data.digests["feedback-train"] == rows_digest(usable)  # hold-out share 0
    fed = {ex.claim for ex in data.train if ex.dataset == "feedback"}
    assert fed.isdisjoint(hostile_claims)
    assert data.feedback_left_out["flagged"] == 200
