"""Parsing one log line at a time: structure and types. Content rules (labels, empty or
over-long text, future datetimes) are checked next, over the whole batch, by the Great
Expectations suites (tasks/ingest/suites/).

Every line ends as a parsed row or a :class:`Reject` with one reason from :data:`REASONS`.
Tolerated as they are: a UTF-8 byte order mark, CRLF line ends, a last line without a
newline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from citeops.tasks.data.multivers import LABELS
from citeops.tasks.logcontract import DATETIME, MAX_META_CHARS, QUERIES

# reason -> what it means; parse-time reasons first, then those the GX suites give
REASONS: dict[str, str] = {
    "bad_utf8": "the line is not valid UTF-8",
    "bad_json": "the line is not valid JSON",
    "not_an_object": "the line is JSON but not an object",
    "empty_line": "the line is empty or whitespace only",
    "line_too_long": "the line is longer than ingest.max_line_bytes",
    "missing_field": "a required field is missing or null",
    "wrong_type": "a field has the wrong type",
    "bad_datetime": "the datetime is not ISO 8601",
    "bad_probabilities": "probabilities are not {label: p} over the known labels summing to 1",
    "nul_character": "a text field holds a NUL character (U+0000), which PostgreSQL refuses",
    "empty_text": "claim or evidence is empty or whitespace only",
    "text_too_long": "claim or evidence is longer than its limit",
    "unknown_label": "a label is not one of SUPPORT, NEI, REFUTE",
    "future_datetime": "the datetime lies in the future (beyond the allowed skew)",
    "bad_latency": "latency_ms is negative",
}

BOM = b"\xef\xbb\xbf"
NUL_ESCAPE = b"\\u0000"  # JSON's only way to put a NUL in a string (a raw one is bad JSON)


@dataclass(frozen=True, slots=True)
class Reject:
    """A line that goes to quarantine."""

    line_no: int
    reason: str
    detail: str
    raw: bytes


@dataclass(slots=True)
class ParsedChunk:
    """The outcome of parsing consecutive lines of one object."""

    lines: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def parse_datetime(value: str) -> datetime:
    """ISO 8601 to a naive UTC datetime (a value without offset is taken as UTC)."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


_EPOCH = datetime(1970, 1, 1)


def _string(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise _Bad("missing_field", name)
    if not isinstance(value, str):
        raise _Bad("wrong_type", f"{name}: expected a string, got {type(value).__name__}")
    return value


def _optional_string(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Bad("wrong_type", f"{name}: expected a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_META_CHARS and name != "model":
        raise _Bad("text_too_long", f"{name}: over {MAX_META_CHARS} characters")
    return text


def _datetime(obj: dict[str, Any]) -> tuple[datetime, float]:
    text = obj.get(DATETIME)
    if type(text) is not str:
        text = _string(obj, DATETIME)
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise _Bad("bad_datetime", text[:64]) from None
    return when, (when - _EPOCH).total_seconds()


def _load(raw: bytes) -> dict[str, Any]:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if raw.startswith(BOM):
        raw = raw[3:]
    if not raw.strip():
        raise _Bad("empty_line", "")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise _Bad("bad_utf8", str(bad)) from None
        raise _Bad("bad_json", str(error)[:200]) from None
    if not isinstance(obj, dict):
        raise _Bad("not_an_object", type(obj).__name__)
    return obj


def _meta(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None or (type(value) is str and len(value) <= MAX_META_CHARS):
        return value
    return _optional_string(obj, name)


def _feedback_row(obj: dict[str, Any]) -> dict[str, Any]:
    claim = obj.get("claim")
    evidence = obj.get("evidence")
    label = obj.get("user_label")
    if not (type(claim) is str and type(evidence) is str and type(label) is str):
        claim, evidence, label = (_string(obj, n) for n in ("claim", "evidence", "user_label"))
    when, ts = _datetime(obj)
    prediction = obj.get("prediction")
    model = obj.get("model")
    return {
        "claim": claim,
        "evidence": evidence,
        "user_label": label.strip().upper(),
        "datetime": when,
        "ts": ts,
        "model": model if model is None or type(model) is str else _optional_string(obj, "model"),
        "prediction": None if prediction is None else orjson.dumps(prediction).decode(),
        "request_id": _meta(obj, "request_id"),
        "model_version": _meta(obj, "model_version"),
        "slot": _meta(obj, "slot"),
        # the authenticated client that sent the line (absent in anonymous and older lines)
        "client_id": _meta(obj, "client_id"),
        "arm": _meta(obj, "arm"),  # of the prediction answered (A/B), absent in older lines
        "source": _meta(obj, "source"),
    }


def _probabilities(obj: dict[str, Any]) -> tuple[dict[str, float], float]:
    value = obj.get("probabilities")
    if value is None:
        raise _Bad("missing_field", "probabilities")
    if not isinstance(value, dict):
        raise _Bad("wrong_type", f"probabilities: expected an object, got {type(value).__name__}")
    probs: dict[str, float] = {}
    for label, p in value.items():
        if label not in LABELS:
            raise _Bad("unknown_label", f"probabilities: {label!r}")
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise _Bad("wrong_type", f"probabilities[{label}]: expected a number")
        if not 0.0 <= p <= 1.0:
            raise _Bad("bad_probabilities", f"probabilities[{label}] = {p}")
        probs[label] = float(p)
    return probs, sum(probs.values())


def _query_row(obj: dict[str, Any]) -> dict[str, Any]:
    request_id = _optional_string(obj, "request_id")
    if request_id is None:
        raise _Bad("missing_field", "request_id")
    claim = _string(obj, "claim")
    evidence = _string(obj, "evidence")
    prediction = _string(obj, "prediction").strip().upper()
    when, ts = _datetime(obj)
    probs, total = _probabilities(obj)
    latency = obj.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise _Bad("wrong_type", "latency_ms: expected a number")
    return {
        "request_id": request_id,
        "claim": claim,
        "evidence": evidence,
        "prediction": prediction,
        "datetime": when,
        "ts": ts,
        "probabilities": probs,
        "prob_sum": total,
        "latency_ms": None if latency is None else float(latency),
        "model_version": _meta(obj, "model_version"),
        "slot": _meta(obj, "slot"),
        "arm": _meta(obj, "arm"),
        "client_id": _meta(obj, "client_id"),
        "source": _meta(obj, "source"),
        **_shadow(obj),
    }


def _shadow(obj: dict[str, Any]) -> dict[str, Any]:
    """The challenger's label and version of a shadow-mode line (None in other lines)."""
    label = obj.get("shadow_prediction")
    if label is not None:
        if type(label) is not str:
            raise _Bad("wrong_type", "shadow_prediction: expected a string")
        label = label.strip().upper()
        if label not in LABELS:
            raise _Bad("unknown_label", f"shadow_prediction: {label[:64]!r}")
    return {"shadow_prediction": label, "shadow_model_version": _meta(obj, "shadow_model_version")}


def _refuse_nul(row: dict[str, Any]) -> None:
    """Quarantine a row whose text holds NUL: PostgreSQL refuses it in text columns, and
    a NUL in a claim or evidence is never meant."""
    for name, value in row.items():
        if type(value) is str and "\x00" in value:
            raise _Bad("nul_character", name)


def parse_lines(kind: str, lines: Iterable[tuple[int, bytes, bool]]) -> ParsedChunk:
    """Parse ``(line_no, raw, too_long)`` lines of a ``feedback`` or ``queries`` object."""
    build = _query_row if kind == QUERIES else _feedback_row
    chunk = ParsedChunk()
    rows, rejects = chunk.rows, chunk.rejects
    count = 0
    for line_no, raw, too_long in lines:
        count += 1
        if too_long:
            rejects.append(Reject(line_no, "line_too_long", f"over {len(raw)} bytes", raw))
            continue
        try:
            row = build(_load(raw))
            if NUL_ESCAPE in raw:
                _refuse_nul(row)
        except _Bad as bad:
            rejects.append(Reject(line_no, bad.reason, bad.detail, raw))
            continue
        row["line_no"] = line_no
        row["raw"] = raw
        rows.append(row)
    chunk.lines = count
    return chunk


def store_text(text: str) -> str:
    """``text`` fit for any store: each NUL written as the JSON escape ``\\u0000``
    (PostgreSQL refuses NUL in text columns)."""
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def raw_text(raw: bytes, limit: int) -> str:
    """The raw line as text for quarantine: undecodable bytes replaced, cut to ``limit``
    characters, then NUL escaped (:func:`store_text`; a gzip file named ``.jsonl`` has
    them)."""
    return store_text(raw[: limit * 4].decode("utf-8", errors="replace")[:limit])
