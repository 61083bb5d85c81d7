"""The ingest pipeline on a local log root, on both stores: SQLite and PostgreSQL."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from citeops.configs.settings import load_settings
from citeops.tasks.data.multivers import read_split
from citeops.tasks.ingest.pipeline import REPORT_KEYS, ingest
from tests.ingest_support import (
    feedback_line,
    fresh_postgres_database,
    query_line,
    store_snapshot,
    write_part,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, citeops_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test on both stores: the default SQLite file, and a fresh PostgreSQL database
    (written with COPY; skipped where PostgreSQL is not running)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    with fresh_postgres_database(admin_url) as url:
        monkeypatch.setenv("CITEOPS_STORE_URL", url)
        yield "postgresql"


@pytest.fixture
def log_root(citeops_env: Path, store: str) -> Path:
    root = citeops_env / "logs"
    root.mkdir(parents=True)
    return root


def quarantined(settings) -> dict[int, str]:  # noqa: ANN001
    from citeops.tasks.store.schema import open_store, quarantine

    with open_store(settings) as engine, engine.connect() as conn:
        return {r.line_no: r.reason for r in conn.execute(select(quarantine))}


def balanced(report: dict) -> bool:
    return (
        report["accepted"] + report["duplicates"] + report["conflicts"] + report["quarantined"]
        == report["lines"]
    )


def test_every_bad_line_kind_is_quarantined_with_its_reason(
    log_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITEOPS_INGEST__MAX_CLAIM_CHARS", "100")
    monkeypatch.setenv("CITEOPS_INGEST__MAX_LINE_BYTES", "2000")
    good = json.dumps(feedback_line())
    cases = [
        ("accepted", "\ufeff" + json.dumps(feedback_line(claim="BOM first"))),
        ("bad_utf8", b'{"claim": "caf\xe9", "evidence": "e", "user_label": "NEI"}'),
        ("bad_json", '{"claim": "half a line'),
        ("not_an_object", "[1, 2, 3]"),
        ("empty_line", "   "),
        ("line_too_long", json.dumps(feedback_line(evidence="e" * 3000))),
        ("missing_field", json.dumps(feedback_line(user_label=None))),
        ("wrong_type", json.dumps(feedback_line(evidence=["a list"]))),
        ("bad_datetime", json.dumps(feedback_line(datetime="2026-13-45"))),
        ("future_datetime", json.dumps(feedback_line(datetime="2999-01-01T00:00:00Z"))),
        ("unknown_label", json.dumps(feedback_line(user_label="MAYBE"))),
        ("empty_text", json.dumps(feedback_line(evidence=" \n ".replace("\n", " ")))),
        ("text_too_long", json.dumps(feedback_line(claim="c" * 101))),
        ("accepted", json.dumps(feedback_line(claim="CRLF line")) + "\r"),
        ("accepted", good),
    ]
    path = write_part(log_root, "feedback", "2026-01-05", "p1.jsonl", [c for _, c in cases])
    path.write_bytes(path.read_bytes() + json.dumps(feedback_line(claim="no newline")).encode())
    settings = load_settings()

    report = ingest(settings).to_dict()

    expected = {i: reason for i, (reason, _) in enumerate(cases, start=1) if reason != "accepted"}
    assert quarantined(settings) == expected
    assert report["lines"] == len(cases) + 1
    assert report["accepted"] == 4  # BOM, CRLF, plain, last line without newline
    assert report["quarantined"] == len(expected)
    assert report["reasons"] == {reason: 1 for reason in expected.values()}
    assert list(report) == list(REPORT_KEYS)
    assert balanced(report)


def test_accounting_identity_matches_generated_tally(log_root: Path) -> None:
    from citeops.benchmarks.ingest import generate
    from citeops.benchmarks.settings import load_bench_settings

    settings = load_settings()
    bench = load_bench_settings(
        ingest_part_lines=700,
        ingest_bad_fraction=0.1,
        ingest_duplicate_fraction=0.1,
        ingest_conflict_fraction=0.05,
    )
    tally = generate(settings, log_root, 3000, seed=7, bench=bench)
    report = ingest(settings).to_dict()
    for key in ("lines", "accepted", "duplicates", "conflicts", "quarantined", "leaked"):
        assert report[key] == tally.get(key, 0), key
    assert report["objects"] == 5
    assert min(report["duplicates"], report["conflicts"], report["leaked"]) > 0
    assert balanced(report)


def test_rerun_ingests_nothing_new_and_new_parts_only(log_root: Path) -> None:
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", [feedback_line(), "{bad"])
    settings = load_settings()
    first = ingest(settings).to_dict()
    before = store_snapshot(settings)
    again = ingest(settings).to_dict()
    assert (first["objects"], first["lines"]) == (1, 2)
    assert (again["objects"], again["lines"], again["accepted"]) == (0, 0, 0)
    assert store_snapshot(settings) == before

    write_part(log_root, "feedback", "2026-01-06", "b.jsonl", [feedback_line(claim="new")])
    third = ingest(settings).to_dict()
    assert (third["objects"], third["lines"], third["accepted"]) == (1, 1, 1)


def test_unpublished_parts_are_skipped(log_root: Path) -> None:
    folder = log_root / "feedback" / "date=2026-01-05"
    write_part(log_root, "feedback", "2026-01-05", ".p.jsonl.tmp", [feedback_line()])
    write_part(log_root, "feedback", "2026-01-05", ".hidden.jsonl", [feedback_line()])
    write_part(log_root, "feedback", "2026-01-05", "notes.txt", [feedback_line()])
    assert len(list(folder.iterdir())) == 3
    report = ingest(load_settings()).to_dict()
    assert report["objects"] == 0


def test_link_loops_dangling_links_and_fifos_are_skipped_and_reported(
    log_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_part(log_root, "feedback", "2026-01-05", "good.jsonl", [feedback_line()]).parent
    (folder / "loop.jsonl").symlink_to(folder / "loop.jsonl")
    (folder / "ping.jsonl").symlink_to(folder / "pong.jsonl")
    (folder / "pong.jsonl").symlink_to(folder / "ping.jsonl")
    (folder / "dangling.jsonl").symlink_to(folder / "deleted.jsonl")
    os.mkfifo(folder / "fifo.jsonl")  # reading it would block the run for ever
    (folder / "linked.jsonl").symlink_to(folder / "good.jsonl")  # a working link is read

    report = ingest(load_settings()).to_dict()

    assert (report["objects"], report["lines"], report["accepted"]) == (2, 2, 1)
    assert report["duplicates"] == 1  # the link's line repeats good.jsonl's
    loop = os.strerror(errno.ELOOP)
    assert report["skipped"] == [
        {"uri": str(folder / "dangling.jsonl"), "reason": "dangling symbolic link"},
        {"uri": str(folder / "fifo.jsonl"), "reason": "not a regular file"},
        {"uri": str(folder / "loop.jsonl"), "reason": loop},
        {"uri": str(folder / "ping.jsonl"), "reason": loop},
        {"uri": str(folder / "pong.jsonl"), "reason": loop},
    ]
    assert list(report) == [*REPORT_KEYS, "skipped"]
    again = ingest(load_settings()).to_dict()
    assert again["objects"] == 0 and len(again["skipped"]) == 5

    from citeops.flows.cli import main

    with pytest.raises(SystemExit):
        main(["ingest", "--json"])
    out, err = capsys.readouterr()
    assert len(json.loads(out)["skipped"]) == 5
    assert f"ingest: skipped {folder / 'loop.jsonl'} ({loop})" in err.splitlines()


def test_changed_object_is_reported_not_reread(log_root: Path) -> None:
    path = write_part(log_root, "feedback", "2026-01-05", "a.jsonl", [feedback_line()])
    settings = load_settings()
    ingest(settings)
    os.utime(path, ns=(1, 1))  # touched but the same bytes: not a change
    assert ingest(settings).changed == []
    path.write_text(json.dumps(feedback_line(claim="rewritten")) + "\n")
    report = ingest(settings)
    assert [c.uri for c in report.changed] == [str(path)]
    assert report.to_dict()["lines"] == 0
    from citeops.tasks.store.queries import feedback_stats

    stats = feedback_stats(settings)
    assert stats["objects"]["changed_after_ingest"] == [str(path)]
    assert stats["feedback"]["rows"] == 1


def test_duplicates_add_votes_and_conflicts_are_flagged(log_root: Path) -> None:
    lines = [
        feedback_line(user_label="SUPPORT", datetime="2026-01-05T10:00:00Z"),
        feedback_line(claim="  ASPIRIN lowers the risk of heart attack in adults. "),  # dup
        feedback_line(user_label="REFUTE", datetime="2026-01-06T10:00:00Z"),  # conflict
        feedback_line(user_label="REFUTE", datetime="2026-01-07T10:00:00Z"),  # dup of it
        feedback_line(claim="Other claim", user_label="NEI"),
    ]
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", lines)
    settings = load_settings()
    report = ingest(settings).to_dict()
    assert (report["accepted"], report["duplicates"], report["conflicts"]) == (2, 2, 1)

    from citeops.tasks.store.queries import accepted_feedback_since, training_feedback

    assert accepted_feedback_since(settings, None) == 1  # the conflicting pair is excluded
    latest = training_feedback(settings)
    assert sorted((e.claim, e.label_name) for e in latest) == [
        ("Aspirin lowers the risk of heart attack in adults.", "REFUTE"),
        ("Other claim", "NEI"),
    ]
    drop = load_settings(ingest={"conflict_rule": "drop"})
    assert [e.claim for e in training_feedback(drop)] == ["Other claim"]
    # majority: SUPPORT has 2 votes, REFUTE 2 -> a tie, dropped; one more SUPPORT decides
    majority = load_settings(ingest={"conflict_rule": "majority"})
    assert [e.claim for e in training_feedback(majority)] == ["Other claim"]
    write_part(log_root, "feedback", "2026-01-08", "b.jsonl", [feedback_line()])
    again = ingest(settings).to_dict()
    assert again["duplicates"] == 1
    winners = {e.claim: e.label_name for e in training_feedback(majority)}
    assert winners["Aspirin lowers the risk of heart attack in adults."] == "SUPPORT"


def test_leaked_test_claims_are_stored_marked_and_never_trained(
    log_root: Path, data_dir: Path
) -> None:
    test_claim = read_split(data_dir, "scifact", "test")[0].claim
    lines = [
        feedback_line(claim="  " + test_claim.upper() + " "),
        feedback_line(claim="A claim of our own", user_label="NEI"),
    ]
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", lines)
    settings = load_settings()
    report = ingest(settings).to_dict()
    assert (report["accepted"], report["leaked"]) == (2, 1)

    from citeops.tasks.store.queries import (
        accepted_feedback_since,
        feedback_stats,
        training_feedback,
    )

    assert [e.claim for e in training_feedback(settings)] == ["A claim of our own"]
    assert accepted_feedback_since(settings, None) == 1
    assert feedback_stats(settings)["feedback"]["leaked_rows"] == 1


def test_new_feedback_since_last_training_follows_marks(log_root: Path) -> None:
    from citeops.tasks.store.queries import last_training_time, mark_training

    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", [feedback_line()])
    settings = load_settings()
    assert ingest(settings).to_dict()["new_feedback_since_last_training"] == 1
    assert last_training_time(settings) is None
    mark = datetime.now(UTC)
    mark_training(settings, mark)
    assert abs(last_training_time(settings) - mark) < timedelta(milliseconds=1)
    write_part(log_root, "feedback", "2026-01-06", "b.jsonl", [feedback_line(claim="later")])
    assert ingest(settings).to_dict()["new_feedback_since_last_training"] == 1


def test_query_logs_are_stored_deduplicated_and_loadable(log_root: Path) -> None:
    lines = [query_line(i) for i in range(5)] + [query_line(2), query_line(9, latency_ms=-1)]
    write_part(log_root, "queries", "2026-01-05", "q.jsonl", lines)
    settings = load_settings()
    report = ingest(settings).to_dict()
    assert (report["accepted"], report["duplicates"], report["quarantined"]) == (5, 1, 1)
    assert report["reasons"] == {"bad_latency": 1}

    from citeops.tasks.store.queries import load_queries

    rows = load_queries(settings)
    assert [r["request_id"] for r in rows] == [f"req-{i:06d}" for i in range(5)]
    assert rows[0]["probabilities"] == {"SUPPORT": 0.8, "NEI": 0.15, "REFUTE": 0.05}
    assert rows[0]["datetime"].tzinfo is not None
    since = rows[2]["datetime"]
    window = load_queries(settings, since=since, until=rows[4]["datetime"])
    assert [r["request_id"] for r in window] == ["req-000002", "req-000003"]


def test_ai4citations_file_given_as_source(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(feedback_line(claim=f"c{i}", datetime="2025-05-06T09:10:11.123456"))
            for i in range(3)
        )
    )
    report = ingest(load_settings(), source=str(path)).to_dict()
    assert (report["objects"], report["accepted"]) == (1, 3)


def test_missing_root_is_a_clear_error_unless_it_is_the_default(tmp_path: Path) -> None:
    from citeops.tasks.ingest.sources import SourceError

    with pytest.raises(SourceError, match="no such folder"):
        ingest(load_settings(), source=str(tmp_path / "nope"))
    settings = load_settings()
    assert not Path(settings.log_root).exists()  # nothing logged yet: nothing to ingest
    assert ingest(settings).to_dict()["objects"] == 0


def test_validation_results_are_stored(log_root: Path) -> None:
    write_part(
        log_root,
        "feedback",
        "2026-01-05",
        "a.jsonl",
        [feedback_line(), feedback_line(user_label="MAYBE")],
    )
    settings = load_settings()
    ingest(settings)
    from citeops.tasks.store.schema import open_store, validation_results

    with open_store(settings) as engine, engine.connect() as conn:
        (row,) = conn.execute(select(validation_results)).all()
    assert (row.suite, row.rows, row.unexpected_rows, row.success) == ("feedback", 2, 1, False)
    results = json.loads(row.results)
    assert any(r["reason"] == "unknown_label" and r["unexpected_count"] == 1 for r in results)


def test_parts_written_by_the_serving_log_writer_are_ingested(citeops_env: Path) -> None:
    from citeops.serving.logwriter import build_log_writer, now_iso

    settings = load_settings(serve={"log_part_max_lines": 2})
    writer = build_log_writer(settings)
    writer.start()
    for i in range(3):
        writer.write("queries", query_line(i, datetime=now_iso(), request_id=f"r{i}"))
    record = feedback_line(datetime=now_iso(), request_id="r1", model_version=3, slot="green")
    writer.write("feedback", record | {"prediction": "NEI", "feedback_id": "f1"})
    writer.close()

    report = ingest(settings).to_dict()
    assert report["objects"] == 3  # queries rotate after 2 lines
    assert (report["lines"], report["accepted"], report["quarantined"]) == (4, 4, 0)
    from citeops.tasks.store.queries import load_queries, training_feedback

    assert sorted(q["request_id"] for q in load_queries(settings)) == ["r0", "r1", "r2"]
    assert [e.label_name for e in training_feedback(settings)] == ["SUPPORT"]


def test_a_repeated_pair_is_an_integrity_error_and_leaves_nothing(log_root: Path) -> None:
    """COPY (PostgreSQL) and INSERT (SQLite) both raise SQLAlchemy's IntegrityError on a
    unique violation (what tells a concurrent run apart), and the transaction leaves
    nothing behind."""
    from sqlalchemy.exc import IntegrityError

    from citeops.tasks.store.schema import feedback, ingest_objects, open_store
    from citeops.tasks.store.writer import begin_object, datetime_param, insert_feedback

    settings = load_settings()
    now = datetime(2026, 1, 5, 10, 0)
    with open_store(settings) as engine:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            object_id = begin_object(conn, "file:///x.jsonl", "feedback", None, now)
            at = datetime_param(conn)(now)
            row = (object_id, 1, "c", "e", "NEI", None, None, at, at, None, None, None)
            row += ("0" * 32, 1, False, False, at)
            insert_feedback(conn, [row, row[:1] + (2,) + row[2:]])
        with engine.connect() as conn:
            assert conn.execute(select(feedback)).first() is None
            assert conn.execute(select(ingest_objects)).first() is None
    write_part(log_root, "feedback", "2026-01-05", "a.jsonl", [feedback_line()])
    assert ingest(settings).to_dict()["accepted"] == 1  # the store is usable afterwards
