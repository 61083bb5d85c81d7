"""Mistakes a user makes inside a command end in one line and exit 2, never a traceback;
what `citeops status --json` prints hides passwords wherever the URL carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import run_citeops


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["drift", "--since", "yesterday"], {}, "'yesterday' is not an ISO date"),
        (
            ["trigger", "--drift-report", "missing-drift.json"],
            {},
            "missing-drift.json: cannot read the drift summary",
        ),
        (
            ["feedback", "stats"],
            {"CITEOPS_STORE_URL": "mysqlish+nodriver://user:hunter2@db/citeops"},
            "store_url (CITEOPS_STORE_URL)",
        ),
    ],
    ids=["drift-since", "trigger-missing-report", "unknown-store-driver"],
)
def test_user_mistake_is_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    citeops_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, out, err = run_citeops(argv, capsys)
    assert code == 2
    assert "Traceback" not in err and message in err
    assert "hunter2" not in err
    if not argv[0] == "drift":  # Typer's usage error for a bad option value is a short box
        assert len(err.strip().splitlines()) == 1, err


def test_status_json_masks_a_password_given_as_a_query_parameter(
    citeops_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "CITEOPS_STORE_URL", "postgresql+psycopg://citeops@db/citeops?password=hunter2&x=1"
    )
    monkeypatch.setenv("CITEOPS_MLFLOW__TRACKING_URI", "http://mlflow:5000/?token=hunter3")
    code, out, _ = run_citeops(["status", "--json"], capsys)
    assert code == 0
    config = json.loads(out)["config"]
    assert "hunter2" not in out and "hunter3" not in out
    assert config["store_url"] == "postgresql+psycopg://citeops@db/citeops?password=***&x=1"
