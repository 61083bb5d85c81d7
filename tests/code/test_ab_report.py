"""The A/B report of an online phase against a hand count on fixed query and feedback logs,
its verdict, the accuracy bootstrap, and the all-or-nothing start across endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.tasks.classifier.stats import (
    bootstrap_accuracy_difference,
    bootstrap_accuracy_interval,
)
from citeops.tasks.release.online_report import (
    Experiment,
    build_report,
    read_experiment_logs,
)

START = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
DAY = "2026-01-10"


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def query(request_id: str, version: str, arm: str, prediction: str, **extra: Any) -> dict:
    line = {
        "request_id": request_id,
        "datetime": at(extra.pop("minute", 5)),
        "claim": f"claim {request_id}",
        "evidence": "evidence",
        "model_version": version,
        "slot": "blue",
        "arm": arm,
        "client_id": f"client-{request_id}",
        "source": "api",
        "prediction": prediction,
        "probabilities": {"SUPPORT": 0.5, "NEI": 0.25, "REFUTE": 0.25},
    }
    return line | extra


def feedback(request_id: str | None, user_label: str, **fields: Any) -> dict:
    return {
        "claim": f"claim {request_id}",
        "evidence": "evidence",
        "user_label": user_label,
        "datetime": at(fields.pop("minute", 30)),
        "request_id": request_id,
    } | fields


def write_logs(root: Path, queries: list[dict], feedbacks: list[dict], extra: str = "") -> None:
    for stream, lines in (("queries", queries), ("feedback", feedbacks)):
        folder = root / stream / f"date={DAY}"
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (folder / "part-0001.jsonl").write_text(text + (extra if stream == "queries" else ""))


def experiment(mode: str = "split") -> Experiment:
    return Experiment("exp-1", mode, 0.5, "1", "2", START)


def settings_at(root: Path, **promote: Any) -> Settings:
    return load_settings(log_root=str(root), promote=promote or None)


def split_logs(root: Path) -> None:
    """Champion v1: six requests, five judged (four right); challenger v2: four requests,
    three judged (one right); and lines the report must leave out."""
    latencies = {"c1": 10, "c2": 20, "c3": 30, "c4": 40, "c5": 50, "c6": 60}
    queries = [query(r, "1", "champion", "SUPPORT", latency_ms=ms) for r, ms in latencies.items()]
    queries[4]["prediction"] = "NEI"  # c5
    queries += [
        query(r, "2", "challenger", "REFUTE", latency_ms=ms)
        for r, ms in {"h1": 5, "h2": 5, "h3": 5, "h4": 100}.items()
    ]
    queries += [
        query("old", "1", "champion", "SUPPORT", latency_ms=999, minute=-60),  # before the start
        query("v9", "9", "champion", "SUPPORT", latency_ms=999),  # another version
    ]
    fb = [
        feedback("c1", "SUPPORT", model_version="1", arm="champion", prediction="SUPPORT"),
        feedback("c2", "SUPPORT", model_version="1", arm="champion", prediction="SUPPORT"),
        feedback("c3", "REFUTE", model_version="1", arm="champion", prediction="SUPPORT"),
        # c4 answered twice: the later (right) one counts
        feedback("c4", "NEI", model_version="1", prediction="SUPPORT", minute=10),
        feedback("c4", "SUPPORT", model_version="1", prediction="SUPPORT", minute=20),
        # c5: no provenance on the line; its query says champion v1 answered NEI
        feedback("c5", "NEI"),
        feedback("h1", "REFUTE", model_version="2", arm="challenger", prediction="REFUTE"),
        feedback("h2", "SUPPORT", model_version="2", arm="challenger", prediction="REFUTE"),
        feedback("h3", "NEI", model_version="2", arm="challenger", prediction="REFUTE"),
        feedback("c6", "SUPPORT", model_version="1", prediction="SUPPORT", minute=-30),  # early
        feedback("v9", "SUPPORT", model_version="9", prediction="SUPPORT"),
    ]
    write_logs(root, queries, fb, extra="this line is not JSON\n")


def test_split_report_equals_a_hand_count(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    split_logs(root)
    settings = settings_at(root, online_min_feedback=3)
    exp = experiment()
    report = build_report(
        settings, exp, read_experiment_logs(settings, exp), START + timedelta(hours=2)
    )
    champion, challenger = report.arms["champion"], report.arms["challenger"]
    assert (champion.version, champion.requests, champion.feedback, champion.correct) == (
        "1",
        6,
        5,
        4,
    )
    assert (challenger.version, challenger.requests, challenger.feedback, challenger.correct) == (
        "2",
        4,
        3,
        1,
    )
    assert champion.accuracy == pytest.approx(0.8)
    assert challenger.accuracy == pytest.approx(1 / 3)
    assert champion.accuracy_low <= 0.8 <= champion.accuracy_high
    # numpy's linear percentile: 50 + 0.75 * 10 and 5 + 0.85 * 95
    assert champion.p95_latency_ms == pytest.approx(57.5)
    assert challenger.p95_latency_ms == pytest.approx(85.75)
    assert report.difference is not None and not report.difference.paired
    assert report.difference.point == pytest.approx(1 / 3 - 0.8)
    assert report.difference.low <= report.difference.point <= report.difference.high
    assert (report.unreadable_lines, report.outside_lines) == (1, 3)
    assert report.judged_feedback == 3
    assert report.hours == pytest.approx(2.0)
    # three judged items are too few to call the drop significant
    assert report.verdict == "promote" and "3 feedback items" in report.reason
    text = report.text()
    assert "0.800 [" in text and "verdict: PROMOTE" in text
    json.dumps(report.to_dict())  # JSON-able as printed and stored


def test_shadow_report_is_paired_on_mirrored_requests_and_gives_agreement(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    queries = [
        query("s1", "1", "champion", "SUPPORT", shadow_prediction="SUPPORT"),
        query("s2", "1", "champion", "NEI", shadow_prediction="NEI"),
        query("s3", "1", "champion", "REFUTE", shadow_prediction="SUPPORT"),
        query("s4", "1", "champion", "SUPPORT"),  # not mirrored (dropped under load)
        query("s5", "1", "champion", "SUPPORT", shadow_prediction="NEI", shadow_model_version="8"),
    ]
    fb = [
        feedback("s1", "SUPPORT", model_version="1", prediction="SUPPORT"),
        feedback("s2", "REFUTE", model_version="1", prediction="NEI"),
        feedback("s3", "REFUTE", model_version="1", prediction="REFUTE"),
        feedback("s4", "SUPPORT", model_version="1", prediction="SUPPORT"),
    ]
    write_logs(root, queries, fb)
    settings = settings_at(root, online_min_feedback=1, online_min_agreement=0.9)
    exp = experiment("shadow")
    report = build_report(settings, exp, read_experiment_logs(settings, exp), START)
    champion, challenger = report.arms["champion"], report.arms["challenger"]
    assert (champion.requests, champion.feedback, champion.correct) == (5, 4, 3)
    # the challenger scored s1-s3 (s5's shadow came from another version) and was right on s1
    assert (challenger.requests, challenger.feedback, challenger.correct) == (3, 3, 1)
    assert challenger.p95_latency_ms is None
    assert report.agreement is not None
    assert (report.agreement.mirrored, report.agreement.agreed) == (3, 2)
    assert report.difference is not None and report.difference.paired
    assert report.difference.point == pytest.approx(1 / 3 - 2 / 3)  # on s1-s3 only
    assert report.verdict == "abort" and "agree on 66.7%" in report.reason


def worse_challenger_logs(root: Path, right_challenger: int, n: int = 60) -> None:
    """Champion right on 50 of ``n`` feedback items, challenger on ``right_challenger``."""
    queries, fb = [], []
    for i in range(n):
        for arm, version, right in (("champion", "1", 50), ("challenger", "2", right_challenger)):
            request = f"{arm}-{i}"
            queries.append(query(request, version, arm, "SUPPORT", latency_ms=10))
            label = "SUPPORT" if i < right else "REFUTE"
            fb.append(feedback(request, label, model_version=version, prediction="SUPPORT"))
    write_logs(root, queries, fb)


def verdict_of(settings: Settings, hours: float) -> tuple[str, str]:
    exp = experiment()
    report = build_report(
        settings, exp, read_experiment_logs(settings, exp), START + timedelta(hours=hours)
    )
    return report.verdict, report.reason


def test_verdict_continues_then_aborts_a_significantly_worse_challenger(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    worse_challenger_logs(root, right_challenger=20)
    waiting = settings_at(root, online_min_feedback=100, online_max_hours=24)
    assert verdict_of(waiting, hours=1)[0] == "continue"
    verdict, reason = verdict_of(waiting, hours=25)  # out of time: judged on what there is
    assert verdict == "abort" and "significantly worse" in reason
    enough = settings_at(root, online_min_feedback=60, online_max_hours=24)
    assert verdict_of(enough, hours=1)[0] == "abort"


def test_verdict_promotes_a_challenger_that_is_not_worse(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    worse_challenger_logs(root, right_challenger=48)
    verdict, reason = verdict_of(settings_at(root, online_min_feedback=60), hours=1)
    assert verdict == "promote" and "60 feedback items" in reason


def test_accuracy_bootstrap_intervals() -> None:
    right = [1] * 30 + [0] * 10
    point, low, high = bootstrap_accuracy_interval(right, 1000, 0)
    assert point == pytest.approx(0.75) and low < 0.75 < high
    assert bootstrap_accuracy_interval(right, 1000, 0) == (point, low, high)  # seeded
    same = bootstrap_accuracy_difference(right, right, 1000, 0, paired=True)
    assert same == (0.0, 0.0, 0.0)  # paired: identical answers never differ
    _, low, high = bootstrap_accuracy_difference(right, right, 1000, 0, paired=False)
    assert low < 0 < high  # unpaired: two independent resamplings of the same answers
    worse = [1] * 10 + [0] * 30
    diff, low, high = bootstrap_accuracy_difference(worse, right, 1000, 0, paired=False)
    assert diff == pytest.approx(-0.5) and high < 0
    with pytest.raises(ValueError):
        bootstrap_accuracy_difference([1, 0], [1], 1000, 0, paired=True)
    with pytest.raises(ValueError):
        bootstrap_accuracy_interval([], 1000, 0)


# ---- endpoints ---------------------------------------------------------------------------
Handler = Callable[[str, str, dict[str, Any] | None], httpx.Response]


def endpoints_client(answers: dict[str, Handler]) -> tuple[httpx.Client, list[tuple]]:
    """An httpx client whose transport answers each host with ``answers[host]``; the calls
    made, as ``(host, method, path, body)``."""
    calls: list[tuple] = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.url.host, request.method, request.url.path, body))
        return answers[request.url.host](request.method, request.url.path, body)

    return httpx.Client(transport=httpx.MockTransport(handle)), calls


def accepting(method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    if path == "/admin/ab/start":
        return httpx.Response(
            200,
            json={
                "experiment_id": body["experiment_id"],
                "mode": body["mode"],
                "share": body["share"],
                "champion_version": "1",
                "challenger_version": "2",
            },
        )
    return httpx.Response(200, json={"active": False})


def refusing(method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return httpx.Response(409, json={"detail": "an experiment is already active"})


def test_a_start_refused_by_one_endpoint_is_aborted_on_the_other() -> None:
    from citeops.tasks.release.online import ExperimentFailed, start_on_endpoints

    client, calls = endpoints_client({"a": accepting, "b": refusing})
    body = {"model_uri": "models:/m/2", "share": 0.1, "mode": "split", "experiment_id": "e"}
    with pytest.raises(ExperimentFailed, match="already active.*aborted on http://a") as refused:
        start_on_endpoints(client, ["http://a", "http://b"], body)
    assert refused.value.aborted == ("http://a",)
    assert calls == [
        ("a", "POST", "/admin/ab/start", body),
        ("b", "POST", "/admin/ab/start", body),
        ("a", "POST", "/admin/ab/stop", {"action": "abort"}),
    ]
    client, calls = endpoints_client({"a": accepting, "b": accepting})
    answers = start_on_endpoints(client, ["http://a", "http://b"], body)
    assert len(answers) == 2 and all(c[2] == "/admin/ab/start" for c in calls)


def active_status(method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    if path == "/admin/ab":
        return httpx.Response(
            200,
            json={
                "active": True,
                "experiment_id": "exp-1",
                "mode": "split",
                "share": 0.5,
                "champion_version": "1",
                "challenger_version": "2",
                "started_at": START.isoformat(),
                "requests": {"champion": 60, "challenger": 60},
                "shadow": {"scored": 0, "dropped": 0},
            },
        )
    return httpx.Response(200, json={"active": False})


def test_the_monitor_aborts_a_significantly_worse_challenger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from citeops.tasks.release.online import review_experiment
    from citeops.tasks.store.promotions import PromotionRecord, list_records, save_record

    root = tmp_path / "logs"
    worse_challenger_logs(root, right_challenger=20)
    settings = settings_at(root, online_min_feedback=60)
    gate = {"passed": True, "text_table": "offline gate table"}
    started = PromotionRecord(kind="retrain", outcome="online", version="2", previous_version="1")
    started.gate = gate | {"online": {"experiment": experiment().to_dict(), "report": None}}
    save_record(settings, started)
    client, calls = endpoints_client({"a": active_status, "b": active_status})

    review = review_experiment(settings, client, ["http://a", "http://b"])

    assert review["action"] == "abort" and review["report"]["verdict"] == "abort"
    stops = [c for c in calls if c[2] == "/admin/ab/stop"]
    assert stops == [
        ("a", "POST", "/admin/ab/stop", {"action": "abort"}),
        ("b", "POST", "/admin/ab/stop", {"action": "abort"}),
    ]
    record = list_records(settings, limit=1)[0]
    assert (record.kind, record.outcome, record.version) == ("online", "aborted", "2")
    assert record.trigger["experiment_id"] == "exp-1"
    assert record.trigger["started_by"] == started.id
    assert record.gate["text_table"] == "offline gate table"  # the offline table beside...
    online = record.gate["online"]["report"]  # ...the online figures
    assert online["arms"]["challenger"]["accuracy"] == pytest.approx(20 / 60)
    assert online["endpoint_counts"]["requests"] == {"champion": 120, "challenger": 120}
    # citeops history shows the online figures under the record
    from citeops.flows.cli import app
    from citeops.flows.cli.common import run_cli

    monkeypatch.setenv("CITEOPS_LOG_ROOT", str(root))
    assert run_cli(app, ["history"]) == 0
    shown = capsys.readouterr().out
    assert "online split 50% v2 vs v1: champion 0.833 [" in shown
    assert "challenger 0.333 [" in shown and "n=60, diff -0.500 [" in shown
    assert "; abort\n" in shown and "online split 50% v2 vs v1 (exp-1)" in shown  # the start
    # concluded: the next review does not call the endpoints
    client, calls = endpoints_client({})
    assert review_experiment(settings, client, ["http://a"]) == {"active": False}
    assert calls == []
