"""Property-based tests (Hypothesis): arbitrary text, bytes and JSON never crash the log
line parser or the API schemas, and every ingested line is accounted for."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from citeops.serving.schemas import (
    BadInput,
    BatchRequest,
    FeedbackRequest,
    PredictRequest,
    TextLimits,
    check_pair,
)
from citeops.tasks.ingest.parse import REASONS, parse_lines, raw_text
from tests.ingest_support import feedback_line, write_part

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("claim", "evidence", "user_label", "datetime", "prediction", "request_id", "client_id")
# objects shaped like log lines, with any value in any field
LINE_OBJECTS = st.dictionaries(
    st.sampled_from(FIELDS + ("probabilities", "latency_ms", "slot", "model_version")),
    JSON | st.sampled_from(["SUPPORT", "nei", "2026-01-05T10:00:00Z", "\x00", "\ud800"]),
    max_size=9,
)


def _encode(value: Any) -> bytes:
    """JSON text as a client in any language may write it (lone surrogates escaped)."""
    return json.dumps(value).encode("utf-8")


RAW_LINES = st.binary(max_size=200) | LINE_OBJECTS.map(_encode) | JSON.map(_encode)


@settings(max_examples=300, deadline=None, database=None)
@given(kind=st.sampled_from(["feedback", "queries"]), lines=st.lists(RAW_LINES, max_size=20))
def test_parser_never_crashes_and_accounts_for_every_line(kind: str, lines: list[bytes]) -> None:
    numbered = [(i, raw, False) for i, raw in enumerate(lines, start=1)]
    chunk = parse_lines(kind, numbered)
    assert chunk.lines == len(lines)
    assert len(chunk.rows) + len(chunk.rejects) == len(lines)
    assert sorted([r["line_no"] for r in chunk.rows] + [r.line_no for r in chunk.rejects]) == list(
        range(1, len(lines) + 1)
    )
    assert all(r.reason in REASONS for r in chunk.rejects)
    for row in chunk.rows:  # what is stored is storable text
        for value in row.values():
            if isinstance(value, str):
                assert "\x00" not in value
                value.encode("utf-8")


@settings(max_examples=200, deadline=None, database=None)
@given(raw=st.binary(max_size=300), limit=st.integers(min_value=1, max_value=100))
def test_quarantine_text_of_any_bytes_is_storable(raw: bytes, limit: int) -> None:
    text = raw_text(raw, limit)
    assert "\x00" not in text
    text.encode("utf-8")


LIMITS = TextLimits(claim=50, evidence=80, request_id=128)


@settings(max_examples=300, deadline=None, database=None)
@given(body=JSON | LINE_OBJECTS)
def test_api_schemas_refuse_or_accept_any_json_and_accepted_text_is_durable(body: Any) -> None:
    for schema in (PredictRequest, FeedbackRequest, BatchRequest):
        try:
            parsed = schema.model_validate(body)
        except ValidationError:
            continue
        if isinstance(parsed, FeedbackRequest):
            try:
                check_pair("", parsed.claim, parsed.evidence, LIMITS)
            except BadInput as error:
                assert error.field in ("claim", "evidence")
                continue
            # whatever is acknowledged can be written as one UTF-8 log line
            orjson.dumps(parsed.model_dump())


@settings(max_examples=300, deadline=None, database=None)
@given(raw=st.binary(max_size=200) | JSON.map(_encode) | LINE_OBJECTS.map(_encode))
def test_api_schemas_parse_any_bytes_without_crashing(raw: bytes) -> None:
    for schema in (PredictRequest, FeedbackRequest, BatchRequest):
        try:
            schema.model_validate_json(raw)
        except ValidationError:
            pass


POOL = [
    feedback_line(),
    feedback_line(user_label="REFUTE"),  # a conflict with the first
    feedback_line(claim="Another claim", user_label="NEI", client_id="alice"),
    feedback_line(claim="Another claim", user_label="NEI"),  # a duplicate, anonymous
    feedback_line(claim="Third claim", client_id="bob", datetime="2026-01-06T00:00:00+02:00"),
]
MIXED_LINE = (
    st.sampled_from(POOL).map(json.dumps)
    | LINE_OBJECTS.map(lambda obj: json.dumps(obj))
    | st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"\r" not in b)
)


@pytest.mark.usefixtures("citeops_env")
@settings(
    max_examples=12,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(parts=st.lists(st.lists(MIXED_LINE, min_size=1, max_size=15), min_size=1, max_size=3))
def test_ingest_accounts_for_every_line_of_any_log(parts: list[list[Any]]) -> None:
    from citeops.configs.settings import load_settings
    from citeops.tasks.ingest.pipeline import ingest
    from citeops.tasks.store.queries import feedback_stats

    with tempfile.TemporaryDirectory(prefix="citeops-prop-") as home:
        root = Path(home) / "logs"
        for number, lines in enumerate(parts):
            write_part(root, "feedback", "2026-01-05", f"part-{number}.jsonl", lines)
        settings_ = load_settings(home=Path(home))
        report = ingest(settings_).to_dict()
        total = sum(len(lines) for lines in parts)
        assert report["lines"] == total
        assert (
            report["accepted"] + report["duplicates"] + report["conflicts"] + report["quarantined"]
            == total
        )
        stats = feedback_stats(settings_)
        assert stats["quarantine"]["rows"] == report["quarantined"]
        assert stats["feedback"]["rows"] == report["accepted"] + report["conflicts"]
        assert ingest(settings_).to_dict()["lines"] == 0  # a rerun ingests nothing again
