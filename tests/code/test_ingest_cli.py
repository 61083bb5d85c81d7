"""`citeops ingest`, `citeops feedback stats` through the CLI app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citeops.flows.cli import main
from tests.ingest_support import feedback_line, write_part


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_ingest_json_report_then_stats(
    citeops_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = citeops_env / "logs"
    write_part(root, "feedback", "2026-01-05", "a.jsonl", [feedback_line(), "not json"])
    code, out, _ = run(capsys, "ingest", "--json")
    assert code == 0
    report = json.loads(out)
    assert list(report) == [
        "objects", "lines", "accepted", "duplicates", "conflicts", "quarantined", "leaked",
        "reasons", "new_feedback_since_last_training",
    ]  # fmt: skip
    assert (report["lines"], report["accepted"], report["quarantined"]) == (2, 1, 1)
    assert report["reasons"] == {"bad_json": 1}

    code, out, _ = run(capsys, "feedback", "stats", "--json")
    stats = json.loads(out)
    assert stats["feedback"]["rows"] == 1
    assert stats["quarantine"]["reasons"] == {"bad_json": 1}
    code, out, _ = run(capsys, "feedback", "stats")
    assert code == 0 and "quarantine     1 lines (bad_json 1)" in out


def test_ingest_text_output_and_missing_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "ingest", "--source", str(tmp_path / "missing"))
    assert code == 2 and err.startswith("error: ") and "no such folder" in err
    write_part(tmp_path, "feedback", "2026-01-05", "a.jsonl", [feedback_line()])
    code, out, _ = run(capsys, "ingest", "--source", str(tmp_path))
    assert code == 0 and "accepted" in out and "objects" in out
