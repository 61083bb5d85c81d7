"""The online phase end to end on two real endpoints (uvicorn, tiny models from the MLflow
store): ``citeops ab start`` on both, traffic with client ids and feedback, ``citeops ab
report`` against a hand count of the answers, the monitor's review aborting a worse
challenger, then a second phase ended by ``citeops ab stop --promote``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeops.configs.settings import load_settings
from citeops.flows.cli import app
from citeops.flows.cli.common import run_cli
from tests.integration.test_retrain import TOKEN, aliases, endpoints, live, register_tiny

pytestmark = pytest.mark.integration
PAIR = {"claim": "Aspirin lowers fever.", "evidence": "Aspirin is an antipyretic drug."}


@pytest.fixture
def env(citeops_env: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CITEOPS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CITEOPS_SERVE__PRECISION", "fp32")
    monkeypatch.setenv("CITEOPS_SERVE__LOG_PART_MAX_SECONDS", "0.2")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "1")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_POLL_SECONDS", "0.2")
    monkeypatch.setenv("CITEOPS_PROMOTE__ONLINE_MIN_FEEDBACK", "10")
    monkeypatch.setenv("CITEOPS_FEEDBACK__RATE_BURST", "1000")
    return monkeypatch


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """Run ``citeops <args> --json`` in this process; its JSON output."""
    capsys.readouterr()
    status = run_cli(app, [*args, "--json"])
    out = capsys.readouterr().out
    assert status == 0, out
    return json.loads(out)


def traffic(bases: list[str]) -> dict[str, dict[str, int]]:
    """60 requests from 30 clients over both endpoints, each answered with feedback (the
    label SUPPORT, NEI every tenth time), and 10 requests without feedback; the hand count
    per arm of requests, feedback and right answers, checking each client stays on its arm
    on both replicas."""
    count = {
        arm: {"requests": 0, "feedback": 0, "correct": 0} for arm in ("champion", "challenger")
    }
    arms: dict[str, set[str]] = {}
    with httpx.Client(timeout=30) as client:
        for i in range(70):
            base, client_id = bases[i % 2], f"user-{i % 30}"
            answer = client.post(
                f"{base}/predict", json=PAIR, headers={"X-Client-Id": client_id}
            ).json()
            arms.setdefault(client_id, set()).add(answer["arm"])
            tally = count[answer["arm"]]
            tally["requests"] += 1
            if i >= 60:
                continue
            label = "NEI" if i % 10 == 0 else "SUPPORT"
            body = PAIR | {"user_label": label, "request_id": answer["request_id"]}
            response = client.post(
                f"{base}/feedback", json=body, headers={"X-Client-Id": client_id}
            )
            assert response.status_code == 202, response.text
            tally["feedback"] += 1
            tally["correct"] += int(answer["label"] == label)
    assert all(len(seen) == 1 for seen in arms.values())  # sticky across replicas
    assert count["champion"]["requests"] and count["challenger"]["requests"]
    return count


def wait_for_logs(settings: Any, bases: list[str], requests: int, feedback: int) -> None:
    """Until the published logs hold the experiment's ``requests`` and ``feedback``."""
    from citeops.tasks.release.online import experiment_report, read_status
    from citeops.tasks.release.promote import admin_client

    deadline = time.monotonic() + 30
    with admin_client(settings) as client:
        while True:
            report = experiment_report(settings, read_status(client, bases))
            arms = report.arms.values()
            done = (
                sum(a.requests for a in arms) >= requests
                and sum(a.feedback for a in arms) >= feedback
            )
            if done or time.monotonic() > deadline:
                return
            time.sleep(0.3)


def test_ab_on_two_endpoints_report_review_promotion_and_all_or_nothing(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from citeops.tasks.release.endpoints import serving_endpoints
    from citeops.tasks.release.online import review_experiment
    from citeops.tasks.release.promote import admin_client

    champion = register_tiny("champion", favour=0)  # always SUPPORT
    worse = register_tiny(None, favour=2, seed=1)  # always REFUTE
    better = register_tiny(None, favour=0, seed=2)
    uri = f"models:/{load_settings().mlflow.registered_model}/{champion}"
    with endpoints(env, uri, uri) as bases:
        started = cli(capsys, "ab", "start", "--version", worse, "--share", "0.5")
        assert (started["kind"], started["outcome"]) == ("online", "online")
        for base in bases:
            status = httpx.get(f"{base}/admin/ab", headers={"Authorization": f"Bearer {TOKEN}"})
            assert status.json()["active"] and status.json()["challenger_version"] == worse

        count = traffic(bases)
        settings = load_settings()
        wait_for_logs(settings, bases, 70, 60)
        report = cli(capsys, "ab", "report")
        for arm, expected in count.items():
            figures = report["arms"][arm]
            got = {name: figures[name] for name in ("requests", "feedback", "correct")}
            assert got == expected, arm
            assert figures["p95_latency_ms"] > 0
        assert report["arms"]["challenger"]["correct"] == 0  # REFUTE is never the label
        assert report["difference"]["high"] < 0
        assert report["verdict"] == "abort"
        assert (
            report["endpoint_counts"]["requests"]["challenger"] == count["challenger"]["requests"]
        )

        with admin_client(settings) as client:  # the monitor's review acts on the verdict
            review = review_experiment(settings, client, serving_endpoints(settings))
        assert review["action"] == "abort" and review["record"]["outcome"] == "aborted"
        assert [live(base) for base in bases] == [champion, champion]
        assert aliases(settings)["challenger"] is None

        cli(capsys, "ab", "start", "--version", better, "--share", "0.5", "--mode", "shadow")
        promoted = cli(capsys, "ab", "stop", "--promote")
        assert promoted["outcome"] == "promoted" and len(promoted["bake"]["endpoints"]) == 2
        assert [live(base) for base in bases] == [better, better]
        assert aliases(settings) == {"champion": better, "previous": champion, "challenger": None}
        history = cli(capsys, "history")["promotions"]
        assert [r["outcome"] for r in history[:4]] == ["promoted", "online", "aborted", "online"]

        # all or nothing: the second endpoint already runs an experiment and refuses
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"model_uri": f"models:/{settings.mlflow.registered_model}/{worse}", "share": 0.1}
        assert httpx.post(f"{bases[1]}/admin/ab/start", json=body, headers=auth).status_code == 200
        assert run_cli(app, ["ab", "start", "--version", champion]) == 2
        assert "aborted on " + bases[0] in capsys.readouterr().err
        assert not httpx.get(f"{bases[0]}/admin/ab", headers=auth).json()["active"]


def test_retrain_with_an_online_phase_ends_in_it_and_the_monitor_review_continues(
    env: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    from citeops.flows.online import online_review
    from citeops.flows.retrain import retrain
    from tests.integration.test_retrain import LENIENT_GATE

    for key, value in LENIENT_GATE.items():
        env.setenv(key, value)
    env.setenv("CITEOPS_PROMOTE__ONLINE_MIN_FEEDBACK", "1000")
    old = register_tiny("champion", favour=2)
    uri = f"models:/{load_settings().mlflow.registered_model}/{old}"
    with endpoints(env, uri, uri) as bases:
        record = retrain(force=True, online="shadow")
        new = record["version"]
        assert (record["kind"], record["outcome"]) == ("retrain", "online"), record["detail"]
        assert record["gate"]["passed"] is True and record["gate"]["text_table"]
        experiment = record["gate"]["online"]["experiment"]
        assert (experiment["mode"], experiment["challenger_version"]) == ("shadow", new)
        assert experiment["endpoints"] == bases
        assert [live(base) for base in bases] == [old, old]  # no swap: the champion serves
        assert aliases(load_settings())["challenger"] == new

        review = online_review()  # the ab-review deployment's flow
        assert review["active"] and review["action"] is None
        assert review["report"]["verdict"] == "continue"
