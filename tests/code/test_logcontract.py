"""The log-line contract is the one the writer writes, the reader takes and the store keeps."""

from __future__ import annotations

import json

import pytest

from citeops.tasks.logcontract import (
    FEEDBACK,
    FEEDBACK_REQUIRED,
    FIELDS,
    MAX_META_CHARS,
    META_FIELDS,
    QUERIES,
)

FULL_LINES = {
    FEEDBACK: {
        "claim": "Aspirin helps.",
        "evidence": "A trial showed it.",
        "user_label": "SUPPORT",
        "datetime": "2026-01-05T10:00:00+00:00",
        "model": "models:/claim-verifier/3",
        "prediction": "NEI",
        "feedback_id": "f1",
        "request_id": "r1",
        "model_version": "3",
        "slot": "blue",
        "arm": "champion",
        "client_id": "app-user",
        "source": "app",
    },
    QUERIES: {
        "request_id": "r1",
        "datetime": "2026-01-05T10:00:00+00:00",
        "claim": "Aspirin helps.",
        "evidence": "A trial showed it.",
        "prediction": "SUPPORT",
        "probabilities": {"SUPPORT": 0.7, "NEI": 0.2, "REFUTE": 0.1},
        "model_version": "3",
        "slot": "green",
        "arm": "challenger",
        "client_id": "app-user",
        "source": "api",
        "latency_ms": 12.5,
        "shadow_prediction": "NEI",
        "shadow_model_version": "4",
    },
}


def parse_one(stream: str, line: dict) -> tuple[list[dict], list[str]]:
    from citeops.tasks.ingest.parse import parse_lines

    chunk = parse_lines(stream, [(1, json.dumps(line).encode(), False)])
    return chunk.rows, [reject.reason for reject in chunk.rejects]


@pytest.mark.parametrize("stream", [FEEDBACK, QUERIES])
def test_reader_accepts_a_line_with_every_contract_field(stream: str) -> None:
    assert set(FULL_LINES[stream]) == set(FIELDS[stream])
    rows, rejects = parse_one(stream, FULL_LINES[stream])
    assert rejects == [] and len(rows) == 1


@pytest.mark.parametrize("name", ["request_id", "model_version", "slot", "client_id"])
def test_identifier_limit_is_the_contracts_for_reader_and_store(name: str) -> None:
    from citeops.tasks.store.schema import feedback, feedback_clients, queries

    assert name in META_FIELDS
    at_limit = FULL_LINES[FEEDBACK] | {name: "x" * MAX_META_CHARS}
    over = FULL_LINES[FEEDBACK] | {name: "x" * (MAX_META_CHARS + 1)}
    assert parse_one(FEEDBACK, at_limit)[1] == []
    assert parse_one(FEEDBACK, over)[1] == ["text_too_long"]
    columns = [table.c[name] for table in (feedback, queries, feedback_clients) if name in table.c]
    assert columns and {column.type.length for column in columns} == {MAX_META_CHARS}


def test_the_apis_feedback_line_uses_only_contract_fields() -> None:
    from citeops.serving.predictions import PredictionService
    from citeops.serving.schemas import FeedbackRequest, TextLimits

    class NoModelLive:
        live = ("blue", None)

        def expected_labels(self) -> tuple[str, ...]:
            return ("SUPPORT", "NEI", "REFUTE")

    service = PredictionService(NoModelLive(), None, None, TextLimits(100, 100, MAX_META_CHARS))
    body = FeedbackRequest(claim="Aspirin helps.", evidence="A trial.", user_label="nei")
    record = service.feedback_record(body, client_id="app-user")
    assert set(FEEDBACK_REQUIRED) <= set(record) <= set(FIELDS[FEEDBACK])
    rows, rejects = parse_one(FEEDBACK, record)
    assert rejects == [] and rows[0]["client_id"] == "app-user"
