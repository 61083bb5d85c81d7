from __future__ import annotations

import json
from pathlib import Path

import pytest

from citeops.flows.cli import main
from citeops.tasks.data.multivers import LABEL2ID, dataset_stats, read_split, read_splits
from citeops.tasks.errors import DataFileError


def _write_dataset(root: Path, claims: list[dict], corpus: list[dict]) -> Path:
    folder = root / "toy"
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "claims_train.jsonl").write_text("".join(json.dumps(c) + "\n" for c in claims))
    return root


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    corpus = [
        {"doc_id": 1, "title": "t1", "abstract": ["First sentence.", "Second one."]},
        {"doc_id": 2, "title": "t2", "abstract": ["Other paper."]},
    ]
    claims = [
        {
            "id": 10,
            "claim": "A claim.",
            "evidence": {"1": [{"sentences": [0], "label": "REFUTE"}]},
            "cited_doc_ids": [1, 2, 1],
        }
    ]
    return _write_dataset(tmp_path / "data", claims, corpus)


def test_reader_semantics(toy_dir: Path) -> None:
    examples = read_split(toy_dir, "toy", "train")
    assert [(e.doc_id, e.label) for e in examples] == [
        (1, LABEL2ID["REFUTE"]),
        (2, LABEL2ID["NEI"]),
    ]
    assert examples[0].evidence == "First sentence. Second one."
    assert examples[0].claim == "A claim."
    assert examples[0].sentences == ("First sentence.", "Second one.")
    assert examples[0].rationale == (0,)
    assert examples[1].rationale == ()  # NEI: no evidence entry for document 2


def test_real_scifact_counts_and_nei(data_dir: Path) -> None:
    dev = read_split(data_dir, "scifact", "dev")
    raw = [json.loads(line) for line in (data_dir / "scifact/claims_dev.jsonl").open()]
    distinct_pairs = sum(len(set(r["cited_doc_ids"])) for r in raw)
    total_cites = sum(len(r["cited_doc_ids"]) for r in raw)
    assert total_cites > distinct_pairs  # the dev split has a doubly cited document
    assert len(dev) == distinct_pairs
    first_nei = next(r for r in raw if not r["evidence"])
    example = next(e for e in dev if e.claim_id == first_nei["id"])
    assert example.label_name == "NEI"


def test_combined_shuffle_is_deterministic(data_dir: Path) -> None:
    a = read_splits(data_dir, ["scifact", "citint"], "dev", seed=7)
    b = read_splits(data_dir, ["scifact", "citint"], "dev", seed=7)
    c = read_splits(data_dir, ["scifact", "citint"], "dev", seed=8)
    assert a == b
    assert a != c
    assert {e.dataset for e in a} == {"scifact", "citint"}


def test_stats_json_shape(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["data", "stats", "--json"])
    assert done.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == dataset_stats(data_dir)
    assert printed["scifact"]["test"]["examples"] == 300
    assert printed["citint"]["train"]["examples"] == 2138
    assert sum(printed["scifact"]["train"]["labels"].values()) == 919


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="claims_dev.jsonl: file not found"):
        read_split(tmp_path, "scifact", "dev")


def test_corrupt_line_names_file_and_line(toy_dir: Path) -> None:
    path = toy_dir / "toy" / "claims_train.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DataFileError, match=r"claims_train.jsonl:2: not valid JSON"):
        read_split(toy_dir, "toy", "train")


def test_unknown_cited_document(toy_dir: Path) -> None:
    path = toy_dir / "toy" / "claims_train.jsonl"
    path.write_text(json.dumps({"id": 1, "claim": "c", "evidence": {}, "cited_doc_ids": [9]}))
    with pytest.raises(DataFileError, match="cited document 9 is not in"):
        read_split(toy_dir, "toy", "train")
