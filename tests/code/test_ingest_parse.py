"""Line parsing, line splitting and the Great Expectations suites, without a store."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest

from citeops.tasks.ingest.parse import REASONS, parse_lines
from citeops.tasks.ingest.sources import LineReader, is_published_part, kind_of
from tests.ingest_support import feedback_line, query_line


def lines_of(*raw: bytes) -> list[tuple[int, bytes, bool]]:
    return [(i, line, False) for i, line in enumerate(raw, start=1)]


def dumps(record: object) -> bytes:
    return json.dumps(record).encode()


PARSE_CASES = {
    "bad_utf8": b'{"claim": "caf\xe9", "evidence": "e", "user_label": "NEI"}',
    "bad_json": b'{"claim": "a", "evidence": ',
    "not_an_object": b'["claim", "evidence"]',
    "empty_line": b"   \t ",
    "missing_field": dumps(feedback_line(evidence=None)),
    "wrong_type": dumps(feedback_line(claim=42)),
    "bad_datetime": dumps(feedback_line(datetime="last tuesday")),
}


@pytest.mark.parametrize("reason", sorted(PARSE_CASES))
def test_each_structural_fault_has_its_own_reason(reason: str) -> None:
    chunk = parse_lines("feedback", lines_of(dumps(feedback_line()), PARSE_CASES[reason]))
    assert chunk.lines == 2
    assert len(chunk.rows) == 1 and chunk.rows[0]["line_no"] == 1
    assert [(r.line_no, r.reason) for r in chunk.rejects] == [(2, reason)]
    assert reason in REASONS


def test_bom_crlf_and_label_case_are_tolerated() -> None:
    bom = b"\xef\xbb\xbf" + dumps(feedback_line())
    crlf = dumps(feedback_line(user_label=" refute ")) + b"\r"
    chunk = parse_lines("feedback", lines_of(bom, crlf))
    assert chunk.rejects == []
    assert [row["user_label"] for row in chunk.rows] == ["SUPPORT", "REFUTE"]
    assert chunk.rows[0]["datetime"] == datetime(2026, 1, 5, 10, 0)  # Z -> naive UTC


def test_offsets_are_converted_to_utc() -> None:
    chunk = parse_lines(
        "feedback", lines_of(dumps(feedback_line(datetime="2026-01-05T12:00:00+02:00")))
    )
    assert chunk.rows[0]["datetime"] == datetime(2026, 1, 5, 10, 0)


def test_over_long_line_is_rejected_unread() -> None:
    chunk = parse_lines("feedback", [(1, b"x" * 10, True)])
    assert [r.reason for r in chunk.rejects] == ["line_too_long"]


def test_query_lines_need_probabilities_over_known_labels() -> None:
    chunk = parse_lines(
        "queries",
        lines_of(
            dumps(query_line(1)),
            dumps(query_line(2, probabilities={"YES": 1.0})),
            dumps(query_line(3, probabilities=[0.1, 0.9])),
            dumps(query_line(4, request_id=None)),
        ),
    )
    assert [r.reason for r in chunk.rejects] == ["unknown_label", "wrong_type", "missing_field"]
    assert chunk.rows[0]["prob_sum"] == pytest.approx(1.0)


def test_text_with_nul_is_quarantined_and_an_escaped_backslash_is_not_nul() -> None:
    chunk = parse_lines(
        "feedback",
        lines_of(
            dumps(feedback_line(claim="nul \x00 inside")),
            dumps(feedback_line(slot="blue\x00")),
            dumps(feedback_line(claim="a literal backslash-u0000: \\u0000")),
        ),
    )
    assert [(r.line_no, r.reason, r.detail) for r in chunk.rejects] == [
        (1, "nul_character", "claim"),
        (2, "nul_character", "slot"),
    ]
    assert [row["claim"] for row in chunk.rows] == ["a literal backslash-u0000: \\u0000"]
    queries = parse_lines("queries", lines_of(dumps(query_line(1, request_id="r\x00"))))
    assert [r.reason for r in queries.rejects] == ["nul_character"]


def test_quarantine_text_escapes_nul() -> None:
    from citeops.tasks.ingest.parse import raw_text

    assert raw_text(b"\x1f\x8b\x08\x00gz", 100) == "\x1f\ufffd\x08\\u0000gz"
    assert "\x00" not in raw_text(b"\x00" * 50, 10) and raw_text(b"ok", 100) == "ok"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\nb", [b"a", b"b"]),  # last line without a newline
        (b"a\r\n\nb\r\n", [b"a\r", b"", b"b\r"]),  # CRLF kept for the parser, empty line kept
        (b"", []),
    ],
)
def test_line_reader_splits_on_newlines_only(data: bytes, expected: list[bytes]) -> None:
    reader = LineReader(io.BytesIO(data), max_line_bytes=100)
    assert [line for _, line, _ in reader] == expected
    assert reader.bytes_read == len(data)


def test_line_reader_cuts_long_lines_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("citeops.tasks.ingest.sources.READ_BLOCK", 7)
    data = b"short\n" + b"y" * 50 + b"\nend"
    out = list(LineReader(io.BytesIO(data), max_line_bytes=10))
    assert out == [(1, b"short", False), (2, b"y" * 10, True), (3, b"end", False)]


def test_published_parts_and_kinds() -> None:
    assert is_published_part("part-1.jsonl")
    assert not is_published_part(".part-1.jsonl.tmp")
    assert not is_published_part(".hidden.jsonl")
    assert not is_published_part("part.jsonl.tmp")
    assert kind_of("queries/date=2026-01-01/p.jsonl") == "queries"
    assert kind_of("feedback/date=2026-01-01/p.jsonl") == "feedback"
    assert kind_of("ai4citations_feedback.jsonl") == "feedback"


@pytest.fixture(scope="module")
def validator():
    from citeops.configs.settings import load_settings
    from citeops.tasks.ingest.validate import BatchValidator

    return BatchValidator(
        load_settings(profile="test", ingest={"max_claim_chars": 60, "max_future_skew_seconds": 60})
    )


def test_suite_gives_each_content_fault_its_reason(validator) -> None:  # noqa: ANN001
    cases = {
        "empty_text": feedback_line(claim="   "),
        "text_too_long": feedback_line(claim="x" * 61),
        "unknown_label": feedback_line(user_label="MAYBE"),
        "future_datetime": feedback_line(datetime="2999-01-01T00:00:00Z"),
    }
    raw = [dumps(feedback_line())] + [dumps(record) for record in cases.values()]
    parsed = parse_lines("feedback", lines_of(*raw))
    checked = validator.validate("feedback", parsed.rows, datetime(2026, 6, 1))
    assert [row["line_no"] for row in checked.rows] == [1]
    assert [(r.line_no, r.reason) for r in checked.rejects] == list(
        zip(range(2, 6), cases, strict=True)
    )
    assert checked.result["success"] is False
    assert checked.result["unexpected_rows"] == 4
    failed = {e["reason"] for e in checked.result["expectations"] if not e["success"]}
    assert failed == set(cases)


def test_first_failing_expectation_in_suite_order_wins(validator) -> None:  # noqa: ANN001
    parsed = parse_lines("feedback", lines_of(dumps(feedback_line(claim=" ", user_label="MAYBE"))))
    checked = validator.validate("feedback", parsed.rows, datetime(2026, 6, 1))
    assert [r.reason for r in checked.rejects] == ["empty_text"]


def test_query_suite_checks_probabilities_and_latency(validator) -> None:  # noqa: ANN001
    raw = [
        dumps(query_line(1)),
        dumps(query_line(2, probabilities={"SUPPORT": 0.2, "NEI": 0.2, "REFUTE": 0.2})),
        dumps(query_line(3, latency_ms=-4)),
        dumps(query_line(4, prediction="MAYBE")),
    ]
    parsed = parse_lines("queries", lines_of(*raw))
    checked = validator.validate("queries", parsed.rows, datetime(2026, 6, 1))
    assert [(r.line_no, r.reason) for r in checked.rejects] == [
        (2, "bad_probabilities"),
        (3, "bad_latency"),
        (4, "unknown_label"),
    ]


def test_suite_files_are_versioned_and_name_known_reasons() -> None:
    from citeops.tasks.ingest.validate import KINDS, load_suite

    for kind in KINDS:
        spec = load_suite(kind)
        assert spec.version >= 1
        assert {e["meta"]["reason"] for e in spec.expectations} <= set(REASONS)
