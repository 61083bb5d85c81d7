"""CLI usage mistakes print Typer's short usage error and exit 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import run_citeops


@pytest.mark.parametrize(
    ("argv", "command", "message"),
    [
        (["histroy"], "citeops", "No such command 'histroy'"),
        (["evaluate"], "citeops evaluate", "Missing option '--model-uri'"),
        (["train", "--bogus"], "citeops train", "No such option: --bogus"),
    ],
    ids=["unknown-command", "missing-option", "unknown-option"],
)
def test_usage_mistake_prints_short_usage_error_and_exits_2(
    argv: list[str], command: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_citeops(argv, capsys)
    assert code == 2
    assert "Traceback" not in err
    assert f"Usage: {command} [OPTIONS]" in err
    assert f"Try '{command} --help' for help." in err
    assert message in err
    assert len(err.strip().splitlines()) <= 8
    assert out == ""


def test_bare_command_group_prints_its_help_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_citeops(["feedback"], capsys)
    assert code == 2
    text = out + err
    assert "Traceback" not in text
    assert "Usage: citeops feedback" in text
    assert "stats" in text  # the group's commands are listed


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_citeops(["train", "--help"], capsys)
    assert code == 0
    assert "--max-length" in out


def test_user_error_inside_a_command_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_citeops(["data", "stats", "--data-dir", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {tmp_path}: no datasets found; run `citeops data fetch` first"
    ]


def test_the_console_entry_gives_prefects_local_server_time_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from citeops.flows.cli import main

    name = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    monkeypatch.setenv(name, "0")  # recorded, so the original state comes back afterwards
    monkeypatch.delenv(name)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert int(os.environ[name]) >= 120  # Prefect's 20 s was exceeded on 2 busy cores
    monkeypatch.setenv(name, "7")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ[name] == "7"  # a value the user set is kept
