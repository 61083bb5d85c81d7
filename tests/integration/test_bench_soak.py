"""`citeops bench soak`: the report's arithmetic, and a short soak end to end on the
default recipe's architecture at tiny size (real server, app, swaps and ingests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citeops.benchmarks.settings import load_bench_settings
from citeops.benchmarks.soak import (
    FEEDBACK_PER_CLIENT_PER_MINUTE,
    MIX,
    Sample,
    feedback_clients,
    format_soak,
    judge,
    line_accounting,
    window_rows,
)
from citeops.configs.settings import load_settings
from tests.harness import run_citeops


def test_rows_bucket_requests_by_when_they_were_sent() -> None:
    samples = [
        Sample("predict", 0.5, 0.010, True),
        Sample("feedback", 9.9, 0.020, True),
        Sample("app_verify", 10.0, 0.500, False, "AppError"),
        Sample("predict", 14.0, 0.030, True),
    ]
    rows = window_rows(samples, 10.0, 15.0, [100.0, 110.0])
    assert [r["requests"] for r in rows] == [2, 2]  # the second row is the partial one
    assert [r["failures"] for r in rows] == [0, 1]
    assert rows[1]["p99_ms"] == 30.0  # failed requests carry no latency
    assert rows[0]["by_kind"]["feedback"] == 1 and rows[1]["by_kind"]["app_verify"] == 1
    assert [r["rss_mb"] for r in rows] == [100.0, 110.0]


def test_feedback_is_spread_over_enough_clients_to_stay_under_the_rate_limit() -> None:
    for rate in (0.5, 4.0, 40.0):
        clients = feedback_clients(rate)
        per_client = rate * 60 * MIX.count("feedback") / len(MIX) / len(clients)
        assert per_client <= FEEDBACK_PER_CLIENT_PER_MINUTE and len(clients) >= 2
        assert len(set(clients.values())) == len(clients)


def test_goals_fail_on_a_lost_line_rss_growth_and_a_slower_last_row() -> None:
    bench = load_bench_settings()
    accounting = line_accounting(10, {"lines": 9, "accepted": 8, "duplicates": 1,
                                      "conflicts": 0, "quarantined": 0})  # fmt: skip
    report = {
        "failures": 0,
        "swap_failures": 0,
        "ingest_failures": 1,
        "rss_mb": {"start": 100.0, "end": 111.0},
        "rows": [{"p99_ms": 10.0}, {"p99_ms": 16.0}],
        "log_lines": {"feedback": accounting},
    }
    goals = judge(report, bench)
    assert accounting["accounted"] and not goals["no_lost_lines"]["ok"]
    assert goals["no_failures"] == {"ok": False, "failed": 1}
    assert not goals["rss_growth"]["ok"] and goals["rss_growth"]["growth"] == 0.11
    assert not goals["p99_stable"]["ok"] and goals["p99_stable"]["last_over_first"] == 1.6
    report |= {"ingest_failures": 0, "rss_mb": {"start": 100.0, "end": 105.0}}
    report["rows"][-1]["p99_ms"] = 14.0
    report["log_lines"]["feedback"] = line_accounting(9, accounting | {"lines": 9})
    assert all(goal["ok"] for goal in judge(report, bench).values())


@pytest.mark.slow
@pytest.mark.integration
def test_bench_soak_reports_a_short_soak_on_the_default_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.tasks.classifier.base import load_base

    head = load_settings(profile="local").model.head
    model, tokenizer = load_base(load_settings(model={"head": head}).model, seed=0)
    folder = tmp_path / "default-recipe"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # parts published every 3 s, so that the ingests during the run find lines
    monkeypatch.setenv("CITEOPS_SERVE__LOG_PART_MAX_SECONDS", "3")
    monkeypatch.setenv("CITEOPS_BENCH__SOAK_WARMUP_SECONDS", "4")
    argv = ["bench", "soak", "--minutes", "0.5", "--rate", "4", "--swap-every", "6",
            "--ingest-every", "10", "--row-seconds", "10", "--model-uri", str(folder),
            "--json"]  # fmt: skip
    code, out, err = run_citeops(argv, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["requests"] > 0 and report["failures"] == 0, report["errors"]
    assert report["warmup"]["seconds"] == 4 and report["warmup"]["requests"] == 16
    assert all(report["by_kind"][kind] > 0 for kind in report["by_kind"])  # app included
    assert report["swaps"] >= 1 and report["swap_failures"] == 0
    rows = report["rows"]
    assert len(rows) == 3 and sum(r["requests"] for r in rows) == report["requests"]
    assert all(r["p99_ms"] and r["p99_ms"] >= r["p50_ms"] for r in rows)
    assert all(r["rss_mb"] for r in rows) and report["rss_mb"]["end"] > 0
    assert report["ingest_failures"] == 0 and report["ingests"][-1]["final"]
    assert sum(row.get("lines", 0) for row in report["ingests"][:-1]) > 0  # during the run
    feedback = report["log_lines"]["feedback"]
    assert feedback["written"] == feedback["ingested"] > 0 and feedback["accounted"]
    goals = report["goals"]
    assert goals["no_failures"]["ok"] and goals["no_lost_lines"]["ok"]
    assert report["rss_mb"]["start"] > 0 and goals["rss_growth"]["growth"] is not None
    assert goals["p99_stable"]["last_over_first"] > 0
    assert err.count("soak row ") == 3  # one progress line per row, on stderr
    assert "p99_stable" in format_soak(report)
