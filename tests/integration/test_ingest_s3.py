"""Ingest from an S3 log root on a real S3 API (moto_server on localhost)."""

from __future__ import annotations

import json

import boto3
import pytest

from citeops.configs.settings import load_settings
from tests.ingest_support import feedback_line, query_line

pytestmark = pytest.mark.integration


def put(client, bucket: str, key: str, lines: list) -> None:  # noqa: ANN001
    body = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n"
    client.put_object(Bucket=bucket, Key=key, Body=body.encode())


def test_s3_root_ingests_published_parts_once_and_reports_changes(
    s3_bucket: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citeops.tasks.ingest.pipeline import ingest

    client = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    prefix = "prod/logs"
    put(
        client,
        s3_bucket,
        f"{prefix}/feedback/date=2026-01-05/a.jsonl",
        [feedback_line(), feedback_line(user_label="NEI"), "{broken"],
    )
    put(
        client,
        s3_bucket,
        f"{prefix}/queries/date=2026-01-05/q.jsonl",
        [query_line(1), query_line(2)],
    )
    put(client, s3_bucket, f"{prefix}/feedback/date=2026-01-05/.b.jsonl.tmp", [feedback_line()])
    put(client, s3_bucket, "elsewhere/feedback/x.jsonl", [feedback_line()])
    monkeypatch.setenv("CITEOPS_LOG_ROOT", f"s3://{s3_bucket}/{prefix}")
    settings = load_settings()

    report = ingest(settings).to_dict()
    assert (report["objects"], report["lines"]) == (2, 5)
    assert (report["accepted"], report["conflicts"], report["quarantined"]) == (3, 1, 1)
    assert ingest(settings).to_dict()["objects"] == 0

    put(client, s3_bucket, f"{prefix}/feedback/date=2026-01-05/a.jsonl", [feedback_line()])
    put(
        client,
        s3_bucket,
        f"{prefix}/feedback/date=2026-01-06/c.jsonl",
        [feedback_line(claim="new")],
    )
    again = ingest(settings)
    assert [c.uri for c in again.changed] == [
        f"s3://{s3_bucket}/{prefix}/feedback/date=2026-01-05/a.jsonl"
    ]
    assert again.to_dict()["objects"] == 1 and again.to_dict()["accepted"] == 1

    from citeops.tasks.store.queries import load_queries

    assert [q["request_id"] for q in load_queries(settings)] == ["req-000001", "req-000002"]


def test_missing_bucket_is_a_clear_error(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from citeops.tasks.ingest.pipeline import ingest
    from citeops.tasks.ingest.sources import SourceError

    monkeypatch.setenv("CITEOPS_S3__ENDPOINT_URL", moto_s3)
    with pytest.raises(SourceError, match="cannot list"):
        ingest(load_settings(), source="s3://no-such-bucket-here/logs")
