"""The curated store's schema: created and upgraded by the tool, refused when newer."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from citeops.configs.settings import load_settings


def test_schema_is_created_once_and_versioned() -> None:
    from citeops.tasks.store.schema import current_revision, head_revision, open_store

    settings = load_settings()
    for _ in range(2):  # the second open finds the schema in place
        with open_store(settings) as engine, engine.connect() as conn:
            revision = current_revision(conn)
            tables = set(inspect(conn).get_table_names())
    assert revision == head_revision()
    assert {
        "feedback", "queries", "quarantine", "ingest_objects", "validation_results",
        "ingest_runs", "training_marks", "promotions", "retrain_decisions",
    } <= tables  # fmt: skip
    assert str(settings.home) in settings.store_url


def test_a_newer_schema_is_refused() -> None:
    from citeops.tasks.store.schema import VERSION_TABLE, StoreError, open_store

    settings = load_settings()
    with open_store(settings) as engine, engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff_from_the_future'"))
    with pytest.raises(StoreError, match="newer than this citeops"), open_store(settings):
        pass


def test_unreachable_store_is_a_clear_error() -> None:
    from citeops.tasks.store.schema import StoreError, open_store

    settings = load_settings(store_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="cannot open the curated store"), open_store(settings):
        pass


def test_empty_store_reads() -> None:
    from citeops.tasks.store.queries import (
        accepted_feedback_since,
        feedback_stats,
        last_training_time,
        load_queries,
        training_feedback,
    )

    settings = load_settings()
    assert load_queries(settings) == []
    assert accepted_feedback_since(settings, None) == 0
    assert training_feedback(settings) == []
    assert last_training_time(settings) is None
    assert feedback_stats(settings)["feedback"]["rows"] == 0


def test_inlined_pair_keys_match_normalise_claim() -> None:
    from citeops.tasks.ingest.dedupe import add_pair_keys, pair_key

    rows = [
        {"claim": "  Aspirin\tHELPS ", "evidence": "A  trial\nshowed it."},
        {"claim": "aspirin helps", "evidence": "a trial showed it."},
        {"claim": "aspirin helps", "evidence": "a trial showed it"},
    ]
    add_pair_keys(rows, frozenset({"aspirin helps"}))
    assert [row["pair_key"] for row in rows] == [pair_key(r["claim"], r["evidence"]) for r in rows]
    assert rows[0]["pair_key"] == rows[1]["pair_key"] != rows[2]["pair_key"]
    assert all(row["leaked"] for row in rows)
