"""The serving side of an online phase (A/B split and shadow): sticky seeded arms, the
admin routes, what answers and logs carry, the bounded shadow queue, and the refusals."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from citeops.configs.settings import load_settings
from citeops.serving.app import create_app
from citeops.serving.experiment import ArmDraw, Experiment, client_arm
from citeops.serving.shadow import SHADOW_BATCH, ShadowCopy, ShadowQueue
from citeops.serving.slots import STATE_FILE, SlotState, wrap_verifier
from citeops.tasks.logcontract import FIELDS, QUERIES
from tests.code.test_serve_bluegreen import FakeVerifier

ADMIN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
PAIR = {"claim": "Aspirin lowers the risk of colorectal cancer.", "evidence": "It did."}
# the champion answers SUPPORT, the challenger REFUTE: every answer shows who gave it
MODELS = {"model-a": (0.7, 0.2, 0.1), "model-b": (0.1, 0.2, 0.7), "bad": (0.9, 0.9, 0.9)}


def experiment(share: float, experiment_id: str = "exp-1", seed: int = 7) -> Experiment:
    return Experiment(
        experiment_id, "split", share, seed, "blue", "green", "a", "b", "2026-12-04T00:00:00"
    )


def start_app(home: Path) -> TestClient:
    settings = load_settings(
        profile="test", home=home, admin_token=ADMIN, serve={"log_part_max_seconds": 0.2}
    )
    app = create_app(
        settings, "model-a", loader=lambda uri: FakeVerifier(uri, MODELS[uri]), ui=False
    )
    return TestClient(app)


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with start_app(tmp_path) as started:
        wait_ready(started)
        yield started


def start(client: TestClient, **body: Any) -> Any:
    return client.post("/admin/ab/start", json={"model_uri": "model-b", **body}, headers=AUTH)


def log_lines(home: Path, stream: str) -> list[dict[str, Any]]:
    """Published lines of ``stream`` (read after the app has stopped and flushed)."""
    rows: list[dict[str, Any]] = []
    for path in sorted((home / "logs" / stream).rglob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


# ---- arms ------------------------------------------------------------------------------
def test_split_share_is_honoured_over_clients_and_every_client_keeps_its_arm() -> None:
    clients = [f"client-{i}" for i in range(1000)]
    for share in (0.1, 0.5):
        draw = ArmDraw(experiment(share))
        arms: dict[str, set[str]] = {}
        for _ in range(4):  # 4,000 requests, 4 from each client, interleaved
            for client_id in clients:
                arms.setdefault(client_id, set()).add(draw.arm(client_id))
        assert all(len(seen) == 1 for seen in arms.values())
        challenger = sum(seen == {"challenger"} for seen in arms.values()) / len(clients)
        assert abs(challenger - share) <= 0.04, (share, challenger)
    # another experiment id draws the clients afresh
    moved = sum(client_arm("exp-1", c, 0.5) != client_arm("exp-2", c, 0.5) for c in clients) / len(
        clients
    )
    assert 0.4 < moved < 0.6


def test_requests_without_a_client_id_split_at_the_share_from_the_seed() -> None:
    first = [ArmDraw(experiment(0.25)).arm(None) for _ in range(1)]
    draw, again = ArmDraw(experiment(0.25)), ArmDraw(experiment(0.25))
    arms = [draw.arm(None) for _ in range(4000)]
    assert arms == [again.arm(None) for _ in range(4000)]  # seeded: the same sequence
    assert first == arms[:1]
    assert abs(arms.count("challenger") / 4000 - 0.25) <= 0.04
    other_seed = ArmDraw(experiment(0.25, seed=8))
    assert [other_seed.arm(None) for _ in range(4000)] != arms


# ---- split end to end ------------------------------------------------------------------
def test_split_answers_carry_arm_and_version_and_clients_stay_on_their_arm(
    client: TestClient,
) -> None:
    before = client.post("/predict", json=PAIR).json()
    assert (before["arm"], before["model_version"]) == ("champion", "model-a")

    started = start(client, share=0.3, mode="split", experiment_id="exp-split", seed=1)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["active"] and body["mode"] == "split" and body["share"] == 0.3
    assert (body["champion_version"], body["challenger_version"]) == ("model-a", "model-b")
    assert body["experiment_id"] == "exp-split" and body["started_at"]

    seen: dict[str, set[tuple[str, str]]] = {}
    for i in range(300):
        client_id = f"user-{i % 100}"
        answer = client.post("/predict", json=PAIR, headers={"X-Client-Id": client_id}).json()
        seen.setdefault(client_id, set()).add((answer["arm"], answer["model_version"]))
    expected = {
        c: {("challenger", "model-b")}
        if client_arm("exp-split", c, 0.3) == "challenger"
        else {("champion", "model-a")}
        for c in seen
    }
    assert seen == expected
    on_challenger = sum(arms == {("challenger", "model-b")} for arms in seen.values())
    assert 10 < on_challenger < 50  # about 30 of 100 clients

    batch = client.post(
        "/predict/batch", json={"pairs": [PAIR, PAIR]}, headers={"X-Client-Id": "user-1"}
    ).json()["predictions"]
    assert {(p["arm"], p["model_version"]) for p in batch} == seen["user-1"]

    status = client.get("/admin/ab", headers=AUTH).json()
    assert status["requests"]["challenger"] == 3 * on_challenger + 2 * (
        seen["user-1"] == {("challenger", "model-b")}
    )
    assert sum(status["requests"].values()) == 302
    metrics = client.get("/metrics").text
    assert 'citeops_predictions_total{arm="challenger",model_version="model-b",source="api"}' in (
        metrics
    )


def test_query_and_feedback_lines_carry_arm_version_client_and_source(tmp_path: Path) -> None:
    with start_app(tmp_path) as client:
        wait_ready(client)
        assert start(client, share=1.0, experiment_id="exp-logs").status_code == 200
        answer = client.post("/predict", json=PAIR, headers={"X-Client-Id": "c-1"}).json()
        anonymous = client.post("/predict", json=PAIR).json()  # share 1: challenger too
        assert answer["arm"] == anonymous["arm"] == "challenger"
        feedback = {**PAIR, "request_id": answer["request_id"], "user_label": "SUPPORT"}
        assert client.post("/feedback", json=feedback).status_code == 202
        client.post("/admin/ab/stop", json={"action": "abort"}, headers=AUTH)
        after = client.post("/predict", json=PAIR).json()
        assert client.post("/feedback", json={**feedback, "request_id": after["request_id"]})
    queries = {line["request_id"]: line for line in log_lines(tmp_path, "queries")}
    line = queries[answer["request_id"]]
    assert (line["arm"], line["model_version"], line["slot"]) == ("challenger", "model-b", "green")
    assert (line["client_id"], line["source"], line["prediction"]) == ("c-1", "api", "REFUTE")
    assert "client_id" not in queries[anonymous["request_id"]]
    assert queries[after["request_id"]]["arm"] == "champion"
    assert all(set(q) <= set(FIELDS[QUERIES]) for q in queries.values())
    answered = {f["request_id"]: f for f in log_lines(tmp_path, "feedback")}
    assert answered[answer["request_id"]]["arm"] == "challenger"
    assert answered[answer["request_id"]]["model_version"] == "model-b"
    assert answered[after["request_id"]]["arm"] == "champion"
    assert answered[after["request_id"]]["model_version"] == "model-a"


# ---- shadow ----------------------------------------------------------------------------
def test_shadow_never_changes_an_answer_and_logs_the_challengers_label(tmp_path: Path) -> None:
    with start_app(tmp_path) as client:
        wait_ready(client)
        champion = client.post("/predict", json=PAIR).json()
        assert start(client, share=1.0, mode="shadow").status_code == 200
        answers = [
            client.post("/predict", json=PAIR, headers={"X-Client-Id": f"u{i}"}).json()
            for i in range(40)
        ]
        deadline = time.monotonic() + 10
        while client.get("/admin/ab", headers=AUTH).json()["shadow"]["scored"] < 40:
            assert time.monotonic() < deadline, "shadow copies not scored"
            time.sleep(0.02)
        status = client.get("/admin/ab", headers=AUTH).json()
        metrics = client.get("/metrics").text
    keep = ("label", "probabilities", "model_version", "slot", "arm")
    assert all({k: a[k] for k in keep} == {k: champion[k] for k in keep} for a in answers)
    assert status["requests"] == {"champion": 40, "challenger": 0}
    assert status["shadow"]["scored"] == 40 and status["shadow"]["dropped"] == 0
    assert 'citeops_shadow_copies_total{outcome="scored"} 40.0' in metrics
    lines = {line["request_id"]: line for line in log_lines(tmp_path, "queries")}
    for answer in answers:
        line = lines[answer["request_id"]]
        assert (line["prediction"], line["arm"], line["model_version"]) == (
            "SUPPORT",
            "champion",
            "model-a",
        )
        assert (line["shadow_prediction"], line["shadow_model_version"]) == ("REFUTE", "model-b")
    assert "shadow_prediction" not in lines[champion["request_id"]]


class Gate:
    """A stand-in for the micro-batcher whose inference thread is blocked until opened."""

    depth = 0

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.passes = 0

    async def run_exclusive(self, fn: Any, *args: Any) -> Any:
        self.passes += 1
        await self.open.wait()
        return fn(*args)


class Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, stream: str, record: dict[str, Any]) -> bool:
        self.lines.append(record)
        return True


def test_shadow_queue_never_grows_past_its_bound_and_every_line_is_written_once() -> None:
    model = wrap_verifier(FakeVerifier("b", MODELS["model-b"]), "model-b")  # type: ignore[arg-type]
    gate, lines, outcomes = Gate(), Lines(), Counter[str]()
    queue = ShadowQueue(gate, lines, size=16, on_outcome=lambda o: outcomes.update([o]))  # type: ignore[arg-type]

    async def scenario() -> None:
        queue.start()
        for i in range(200):
            queue.offer(ShadowCopy(model, "claim", "evidence", {"request_id": str(i)}))
            assert queue.waiting <= 16
            await asyncio.sleep(0)  # the worker takes a batch and blocks on the gate
        blocked = queue.counts.dropped
        assert 0 < len(lines.lines) == blocked  # dropped copies are logged at once
        gate.open.set()
        for _ in range(500):
            if queue.counts.scored + queue.counts.dropped == 200:
                break
            await asyncio.sleep(0.01)
        await queue.stop()

    asyncio.run(scenario())
    assert queue.high_water == 16
    assert queue.counts.scored + queue.counts.dropped == 200
    # the queue's bound, plus the batch the worker took before it blocked
    assert 16 < queue.counts.scored <= 16 + SHADOW_BATCH
    assert outcomes == {"scored": queue.counts.scored, "dropped": queue.counts.dropped}
    ids = [line["request_id"] for line in lines.lines]
    assert sorted(ids, key=int) == [str(i) for i in range(200)]  # once each
    scored = [line for line in lines.lines if "shadow_prediction" in line]
    assert len(scored) == queue.counts.scored
    assert {line["shadow_prediction"] for line in scored} == {"REFUTE"}


def test_copies_waiting_at_shutdown_are_logged_without_a_shadow_prediction() -> None:
    model = wrap_verifier(FakeVerifier("b"), "model-b")  # type: ignore[arg-type]
    gate, lines = Gate(), Lines()
    queue = ShadowQueue(gate, lines, size=64)  # type: ignore[arg-type]

    async def scenario() -> None:
        queue.start()
        for i in range(20):
            queue.offer(ShadowCopy(model, "c", "e", {"request_id": str(i)}))
        await asyncio.sleep(0.01)
        await queue.stop()  # the gate never opens

    asyncio.run(scenario())
    assert sorted(int(line["request_id"]) for line in lines.lines) == list(range(20))
    assert not any("shadow_prediction" in line for line in lines.lines)


# ---- admin operations ------------------------------------------------------------------
def test_deploy_rollback_and_second_start_are_refused_while_an_experiment_runs(
    client: TestClient,
) -> None:
    assert start(client, share=0.5, experiment_id="exp-busy").status_code == 200
    for response in (
        client.post("/admin/deploy", json={"model_uri": "model-b"}, headers=AUTH),
        client.post("/admin/rollback", headers=AUTH),
        start(client, share=0.1),
    ):
        assert response.status_code == 409
        detail = response.json()["detail"]
        assert "exp-busy is running; stop it first" in detail and "\n" not in detail
    assert client.get("/version").json()["live"]["model_version"] == "model-a"


def test_refused_challenger_gets_the_deploys_error_and_starts_nothing(client: TestClient) -> None:
    refused = start(client, share=0.5, model_uri="bad")
    deploy = client.post("/admin/deploy", json={"model_uri": "bad"}, headers=AUTH)
    assert refused.status_code == deploy.status_code == 422
    assert refused.json() == deploy.json()
    assert refused.json()["detail"].startswith("candidate rejected, live slot unchanged:")
    status = client.get("/admin/ab", headers=AUTH).json()
    assert status["active"] is False and status["experiment_id"] is None
    assert client.post("/admin/ab/stop", json={"action": "abort"}, headers=AUTH).status_code == 409
    assert start(client, share=1.5).status_code == 422
    assert start(client, share=0.5, mode="canary").status_code == 422
    assert client.get("/admin/ab").status_code == 401


def test_abort_leaves_the_champion_and_promote_switches_to_the_challenger(
    client: TestClient,
) -> None:
    assert start(client, share=1.0, experiment_id="exp-abort").status_code == 200
    aborted = client.post("/admin/ab/stop", json={"action": "abort"}, headers=AUTH).json()
    assert aborted["active"] is False and aborted["outcome"] == "abort" and aborted["ended_at"]
    assert aborted["swap"] is None
    assert aborted["slots"]["live"]["model_version"] == "model-a"
    assert aborted["slots"]["idle"]["model_version"] == "model-b"  # kept, as after a rollback
    answer = client.post("/predict", json=PAIR, headers={"X-Client-Id": "x"}).json()
    assert (answer["arm"], answer["model_version"]) == ("champion", "model-a")
    assert client.get("/admin/ab", headers=AUTH).json()["experiment_id"] == "exp-abort"

    assert start(client, share=0.5, experiment_id="exp-promote").status_code == 200
    promoted = client.post("/admin/ab/stop", json={"action": "promote"}, headers=AUTH).json()
    assert promoted["outcome"] == "promote" and promoted["active"] is False
    assert promoted["swap"]["before"]["model_version"] == "model-a"
    assert promoted["swap"]["after"]["model_version"] == "model-b"
    version = client.get("/version").json()
    assert version["live"]["model_version"] == "model-b"
    assert version["last_swap_kind"] == "ab-promote"
    answer = client.post("/predict", json=PAIR).json()
    assert (answer["arm"], answer["model_version"]) == ("champion", "model-b")
    assert client.post("/admin/rollback", headers=AUTH).status_code == 200  # allowed again


def test_a_running_experiment_survives_a_restart(tmp_path: Path) -> None:
    with start_app(tmp_path) as client:
        wait_ready(client)
        assert start(client, share=1.0, experiment_id="exp-restart").status_code == 200
    persisted = SlotState.read(tmp_path / "state" / STATE_FILE)
    assert persisted.experiment is not None and persisted.experiment.active
    with start_app(tmp_path) as client:
        wait_ready(client)
        deadline = time.monotonic() + 10
        while not client.get("/admin/ab", headers=AUTH).json()["challenger_loaded"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        status = client.get("/admin/ab", headers=AUTH).json()
        assert status["active"] and status["experiment_id"] == "exp-restart"
        answer = client.post("/predict", json=PAIR).json()
        assert (answer["arm"], answer["model_version"]) == ("challenger", "model-b")


def test_client_id_comes_from_the_credential_then_the_header_and_is_checked(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        profile="test",
        home=tmp_path,
        admin_token=ADMIN,
        feedback={"api_keys": "acme:key-of-acme-0123456789"},
    )
    app = create_app(
        settings, "model-a", loader=lambda uri: FakeVerifier(uri, MODELS[uri]), ui=False
    )
    with TestClient(app) as client:
        wait_ready(client)
        assert start(client, share=0.5, experiment_id="exp-who").status_code == 200
        online = app.state.serving.online
        expected = client_arm("exp-who", "acme", 0.5)
        for header in ({"X-Client-Id": "someone-else"}, {}):
            headers = {"Authorization": "Bearer key-of-acme-0123456789", **header}
            assert client.post("/predict", json=PAIR, headers=headers).json()["arm"] == expected
        too_long = client.post("/predict", json=PAIR, headers={"X-Client-Id": "x" * 129})
        assert too_long.status_code == 422 and too_long.json()["field"] == "X-Client-Id"
        assert online.experiment.experiment_id == "exp-who"


def test_the_app_session_is_routed_by_its_client_id(client: TestClient) -> None:
    from citeops.serving.ui.service import AppService, new_client_id

    assert start(client, share=0.5, experiment_id="exp-app").status_code == 200
    service = AppService(client.app.state.serving)  # type: ignore[attr-defined]
    sessions = [new_client_id() for _ in range(12)]
    for session in sessions:
        for _ in range(2):
            answer = client.portal.call(  # type: ignore[union-attr]
                service.verify, "A claim.", "Some evidence.", None, 5, session
            )
            assert answer.arm == client_arm("exp-app", session, 0.5)
            assert answer.model_version == ("model-b" if answer.arm == "challenger" else "model-a")


def test_score_copies_encodes_and_scores_on_the_given_model() -> None:
    from citeops.serving.shadow import score_copies

    model = wrap_verifier(FakeVerifier("b", MODELS["model-b"]), "model-b")  # type: ignore[arg-type]
    probs = score_copies(model, [ShadowCopy(model, "c", "e", {})] * 3)
    assert probs.shape == (3, 3) and np.allclose(probs[:, 2], 0.7)


def test_ingest_reads_arm_and_shadow_fields_and_quarantines_a_bad_shadow_label() -> None:
    from citeops.tasks.ingest.parse import parse_lines

    line = {
        "request_id": "r1",
        "datetime": "2026-12-04T10:00:00+00:00",
        "claim": "A claim.",
        "evidence": "Some evidence.",
        "prediction": "SUPPORT",
        "probabilities": {"SUPPORT": 0.7, "NEI": 0.2, "REFUTE": 0.1},
        "model_version": "3",
        "arm": "champion",
        "client_id": "c-1",
        "source": "api",
        "shadow_prediction": "refute",
        "shadow_model_version": "4",
    }
    older = {k: v for k, v in line.items() if k not in ("arm", "client_id", "source")}
    bad = line | {"shadow_prediction": "MAYBE"}
    raw = [(i, json.dumps(x).encode(), False) for i, x in enumerate((line, older, bad), 1)]
    chunk = parse_lines(QUERIES, raw)
    first, second = chunk.rows
    assert (first["arm"], first["client_id"], first["source"]) == ("champion", "c-1", "api")
    assert (first["shadow_prediction"], first["shadow_model_version"]) == ("REFUTE", "4")
    assert second["arm"] is None and second["shadow_prediction"] == "REFUTE"
    assert [(r.line_no, r.reason) for r in chunk.rejects] == [(3, "unknown_label")]
