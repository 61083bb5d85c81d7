"""Timestamps shared by the stages: ISO 8601 text to an aware UTC datetime.

The log lines (their contract: :mod:`citeops.tasks.logcontract`, docs/ingestion.md) write
``datetime`` as ISO 8601; a value without an offset means UTC, and a trailing ``Z`` is
accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_utc(text: str) -> datetime:
    """``text`` (ISO 8601, ``Z`` or an offset, or none meaning UTC) as an aware datetime.

    Raises:
        ValueError: ``text`` is not an ISO 8601 date or date-time.
    """
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_utc_or_none(value: object) -> datetime | None:
    """Like :func:`parse_utc` for a value read from a log line: ``None`` when it is not a
    string or not ISO 8601 (the caller decides what a missing time means)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_utc(value)
    except ValueError:
        return None
