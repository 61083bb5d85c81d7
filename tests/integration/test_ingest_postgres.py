"""The production profile: curated store on the local PostgreSQL server, logs on S3 (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from citeops.configs.settings import load_settings
from tests.ingest_support import (
    feedback_line,
    fresh_postgres_database,
    query_line,
    store_snapshot,
    write_part,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_database(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database with a unique name; dropped afterwards. Yields its SQLAlchemy URL.

    Skips (named once in the session summary) when PostgreSQL is not on this machine."""
    with fresh_postgres_database(postgres_admin_url) as url:
        yield url


def test_production_profile_on_postgresql_equals_sqlite(
    pg_database: str, s3_bucket: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from citeops.tasks.ingest.pipeline import ingest
    from citeops.tasks.store.queries import (
        accepted_feedback_since,
        feedback_stats,
        load_queries,
        mark_training,
        training_feedback,
    )

    client = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    feedback = [
        feedback_line(),
        feedback_line(),
        feedback_line(user_label="REFUTE", datetime="2026-01-06T00:00:00Z"),
        # production requires credentials: only authenticated feedback counts for the trigger
        feedback_line(claim="Other", user_label="NEI", client_id="app-user"),
        feedback_line(claim="Other", user_label="NEI", client_id="app-user"),
        feedback_line(claim="x" * 6000),
        "[]",
    ]
    body = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in feedback)
    client.put_object(Bucket=s3_bucket, Key="prod/feedback/date=2026-01-05/a.jsonl", Body=body)
    queries = "\n".join(json.dumps(query_line(i)) for i in range(3))
    client.put_object(Bucket=s3_bucket, Key="prod/queries/date=2026-01-05/q.jsonl", Body=queries)

    monkeypatch.setenv("CITEOPS_PROFILE", "production")
    monkeypatch.setenv("CITEOPS_STORE_URL", pg_database)
    monkeypatch.setenv("CITEOPS_LOG_ROOT", f"s3://{s3_bucket}/prod")
    settings = load_settings()
    assert settings.profile == "production" and settings.store_url == pg_database

    report = ingest(settings).to_dict()
    assert report == {
        "objects": 2,
        "lines": 10,
        "accepted": 5,
        "duplicates": 2,
        "conflicts": 1,
        "quarantined": 2,
        "leaked": 0,
        "reasons": {"not_an_object": 1, "text_too_long": 1},
        "new_feedback_since_last_training": 1,
    }
    assert ingest(settings).to_dict()["objects"] == 0
    assert [q["request_id"] for q in load_queries(settings)] == [
        "req-000000", "req-000001", "req-000002",
    ]  # fmt: skip
    assert {e.label_name for e in training_feedback(settings)} == {"REFUTE", "NEI"}
    assert feedback_stats(settings)["feedback"]["conflict_pairs"] == 1
    assert feedback_stats(settings)["feedback"]["authenticated_rows"] == 1
    from datetime import UTC, datetime

    mark_training(settings, datetime.now(UTC))
    assert accepted_feedback_since(settings, datetime(2000, 1, 1)) == 1
    postgres_state = store_snapshot(settings)

    local = tmp_path / "ai4citations.jsonl"  # a local file: its mtime_ns needs 64 bits
    local.write_text(json.dumps(feedback_line(claim="From a local file")) + "\n")
    assert ingest(settings, source=str(local)).to_dict()["accepted"] == 1
    assert ingest(settings, source=str(local)).to_dict()["objects"] == 0
    local.unlink()

    monkeypatch.setenv("CITEOPS_STORE_URL", f"sqlite:///{tmp_path / 'same.db'}")
    sqlite_settings = load_settings()
    assert ingest(sqlite_settings).to_dict() | {"new_feedback_since_last_training": 1} == report
    assert store_snapshot(sqlite_settings) == postgres_state


def test_nul_in_a_line_never_blocks_postgresql_ingestion(
    pg_database: str, citeops_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from citeops.tasks.ingest.pipeline import ingest
    from citeops.tasks.store.schema import open_store, quarantine

    root = citeops_env / "logs"
    gzip_named_jsonl = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xabV"
    write_part(
        root,
        "feedback",
        "2026-01-05",
        "a.jsonl",
        [
            gzip_named_jsonl,
            b'{"claim": "raw \x00 byte", "evidence": "e", "user_label": "NEI"}',
            json.dumps(feedback_line(claim="escaped \u0000 in the claim")),
            json.dumps(feedback_line(datetime="2026-01-05\u0000T10:00")),
            json.dumps(feedback_line()),
        ],
    )
    write_part(root, "feedback", "2026-01-06", "b.jsonl", [feedback_line(claim="After it")])
    monkeypatch.setenv("CITEOPS_STORE_URL", pg_database)
    settings = load_settings()

    report = ingest(settings).to_dict()

    assert (report["objects"], report["lines"], report["accepted"]) == (2, 6, 2)
    assert report["reasons"] == {
        "bad_datetime": 1,
        "bad_json": 1,
        "bad_utf8": 1,
        "nul_character": 1,
    }
    with open_store(settings) as engine, engine.connect() as conn:
        rows = {r.line_no: r for r in conn.execute(select(quarantine))}
    assert rows[1].raw.startswith("\x1f\ufffd\x08\\u0000")
    assert rows[2].raw == '{"claim": "raw \\u0000 byte", "evidence": "e", "user_label": "NEI"}'
    assert rows[3].detail == "claim" and "\\u0000" in rows[3].raw
    assert "\x00" not in rows[4].detail + rows[4].raw
    assert ingest(settings).to_dict()["objects"] == 0
