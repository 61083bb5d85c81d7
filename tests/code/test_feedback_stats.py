"""`citeops feedback stats` by model version and by client: lines, label mix and agreement
with the model, equal to a hand count, on SQLite and on the local PostgreSQL server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.ingest.pipeline import ingest
from citeops.tasks.store.feedback_stats import feedback_breakdown, predicted_label
from citeops.tasks.store.queries import exclude_client
from tests.harness import run_citeops
from tests.ingest_support import feedback_line, write_part

PROBS_SUPPORT = {"SUPPORT": 0.5, "NEI": 0.3, "REFUTE": 0.2}
LINES = [
    # version 1: c1 agreed by alice and (a duplicate line) bob; c2 disagreed by alice
    feedback_line(claim="c1", prediction="SUPPORT", model_version="1", client_id="alice"),
    feedback_line(claim="c1", prediction="SUPPORT", model_version="1", client_id="bob"),
    feedback_line(
        claim="c2", user_label="REFUTE", prediction=PROBS_SUPPORT, model_version="1",
        client_id="alice",
    ),
    # version 2, anonymous: c3 agrees (probabilities), c4 has no prediction
    feedback_line(claim="c3", user_label="NEI", prediction={"NEI": 0.6, "SUPPORT": 0.4},
                  model_version="2"),
    feedback_line(claim="c4", user_label="NEI", prediction=None, model_version="2"),
    # no model version: mallory, excluded below, agrees
    feedback_line(claim="c5", user_label="REFUTE", prediction="refute", client_id="mallory"),
]  # fmt: skip


def tally(lines: int, rows: int, labels: dict[str, int], judged: int, agree: int) -> dict:
    mix = {"SUPPORT": 0, "NEI": 0, "REFUTE": 0, **labels}
    rate = round(agree / judged, 6) if judged else None
    return {
        "lines": lines,
        "rows": rows,
        "labels": mix,
        "judged": judged,
        "agree": agree,
        "agreement": rate,
    }


EXPECTED_VERSIONS = {
    "1": tally(3, 2, {"SUPPORT": 2, "REFUTE": 1}, judged=3, agree=2),
    "2": tally(2, 2, {"NEI": 2}, judged=1, agree=1),
    None: tally(1, 1, {"REFUTE": 1}, judged=1, agree=1),
}
EXPECTED_CLIENTS = {
    "alice": {**tally(2, 2, {"SUPPORT": 1, "REFUTE": 1}, judged=2, agree=1), "excluded": False},
    "bob": {**tally(1, 1, {"SUPPORT": 1}, judged=1, agree=1), "excluded": False},
    None: {**tally(2, 2, {"NEI": 2}, judged=1, agree=1), "excluded": False},
    "mallory": {**tally(1, 1, {"REFUTE": 1}, judged=1, agree=1), "excluded": True},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, citeops_env: Path, monkeypatch) -> Iterator[None]:  # noqa: ANN001
    """The test profile's SQLite store, or a fresh database on the local PostgreSQL."""
    if request.param == "sqlite":
        yield
        return
    request.getfixturevalue("postgres_admin_url")  # skips when PostgreSQL is down
    psycopg = pytest.importorskip("psycopg")
    name = f"citeops_stats_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        monkeypatch.setenv("CITEOPS_STORE_URL", f"postgresql+psycopg://postgres@127.0.0.1/{name}")
        try:
            yield
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def by_key(entries: list[dict], key: str) -> dict:
    return {entry.pop(key): entry for entry in entries}


def test_breakdown_by_version_and_client_equals_a_hand_count(
    store: None, citeops_env: Path
) -> None:
    write_part(citeops_env / "logs", "feedback", "2026-01-05", "a.jsonl", LINES)
    settings = load_settings()
    assert ingest(settings).to_dict()["duplicates"] == 1
    exclude_client(settings, "mallory")

    found = feedback_breakdown(settings)
    versions = found["by_model_version"]
    assert [v["model_version"] for v in versions][0] == "1"  # the busiest first
    assert by_key(versions, "model_version") == EXPECTED_VERSIONS
    clients = found["by_client"]
    assert sum(c["lines"] for c in clients) == len(LINES)  # every line has one client entry
    assert by_key(clients, "client_id") == EXPECTED_CLIENTS


def test_cli_prints_one_json_document_or_a_table(
    citeops_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_part(citeops_env / "logs", "feedback", "2026-01-05", "a.jsonl", LINES)
    ingest(load_settings())

    code, out, _ = run_citeops(["feedback", "stats", "--json"], capsys)
    assert code == 0
    document = json.loads(out)  # the whole output is one document
    assert document["feedback"]["votes"] == len(LINES)
    assert by_key(document["by_model_version"], "model_version")["1"] == EXPECTED_VERSIONS["1"]
    assert {c["client_id"] for c in document["by_client"]} == set(EXPECTED_CLIENTS)

    code, out, _ = run_citeops(["feedback", "stats"], capsys)
    assert code == 0
    table = out[out.index("by model version") :]
    assert "66.7% of 3" in table and "100.0% of 1" in table
    rows = table[table.index("by client") :].splitlines()[1:]
    clients = {row.split()[0]: row.split()[1:] for row in rows}
    assert clients["bob"][:4] == ["1", "1", "0", "0"]  # lines, SUPPORT, NEI, REFUTE
    assert clients["(none)"][:4] == ["2", "0", "2", "0"]


@pytest.mark.parametrize(
    ("stored", "label"),
    [
        ('"SUPPORT"', "SUPPORT"),
        ('" nei "', "NEI"),
        ('{"SUPPORT": 0.2, "REFUTE": 0.8}', "REFUTE"),
        ('{"SUPPORT": "x"}', None),
        ("{}", None),
        ("[1, 2]", None),
        ("not json", None),
        (None, None),
    ],
)
def test_predicted_label_reads_a_label_or_probabilities(stored: str | None, label: str) -> None:
    assert predicted_label(stored) == label
