"""Read claim-verification benchmarks in MultiVerS format.

Each dataset folder holds ``corpus.jsonl`` (``doc_id``, ``title``, ``abstract``: a list of
sentences) and ``claims_<split>.jsonl`` (``id``, ``claim``, ``evidence`` {doc_id: [{sentences,
label}]}, ``cited_doc_ids``).

One :class:`Example` is one distinct (claim, cited document) pair: the evidence text is the
document's abstract sentences joined by spaces, the label is the one given for that document
in ``evidence``, or NEI when the document is cited but has no evidence entry.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citeops.tasks.errors import DataFileError

LABELS: tuple[str, ...] = ("SUPPORT", "NEI", "REFUTE")
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))
KNOWN_DATASETS: tuple[str, ...] = ("scifact", "citint")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
CORPUS_FILE = "corpus.jsonl"


@dataclass(frozen=True, slots=True)
class Example:
    """One (claim, cited document) pair with its gold label id."""

    claim: str
    evidence: str
    label: int
    dataset: str = ""
    split: str = ""
    claim_id: int = -1
    doc_id: int = -1
    # the document's sentences and the indices of its rationale sentences, when the
    # benchmark gives them (training-time augmentation reads them; equality ignores them)
    sentences: tuple[str, ...] = field(default=(), compare=False, repr=False)
    rationale: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def label_name(self) -> str:
        return ID2LABEL[self.label]


def claims_file(data_dir: Path, dataset: str, split: str) -> Path:
    return Path(data_dir) / dataset / f"claims_{split}.jsonl"


def corpus_file(data_dir: Path, dataset: str) -> Path:
    return Path(data_dir) / dataset / CORPUS_FILE


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataFileError(
            f"{path}: file not found; run `citeops data fetch --dest {path.parent.parent}` "
            "or set CITEOPS_DATA_DIR to the folder that holds the datasets"
        )
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataFileError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise DataFileError(f"{path}:{number}: expected a JSON object")
                yield number, row
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not UTF-8 text ({error.reason})") from None


def load_corpus(path: Path) -> dict[int, tuple[str, ...]]:
    """Map each ``doc_id`` to its abstract's sentences (a string abstract is one sentence).

    Raises:
        DataFileError: the file is missing, not JSON Lines, or a row lacks its fields.
    """
    corpus: dict[int, tuple[str, ...]] = {}
    for number, row in _read_jsonl(path):
        try:
            doc_id = int(row["doc_id"])
            abstract = row["abstract"]
        except (KeyError, TypeError, ValueError) as error:
            raise DataFileError(f"{path}:{number}: bad corpus row ({error!r})") from None
        if isinstance(abstract, str):
            corpus[doc_id] = (abstract.strip(),)
        elif isinstance(abstract, list):
            corpus[doc_id] = tuple(s for s in (str(s).strip() for s in abstract) if s)
        else:
            raise DataFileError(f"{path}:{number}: 'abstract' must be a list of sentences")
    return corpus


def _rationale_for(evidence: dict[str, Any], doc_id: int, count: int) -> tuple[int, ...]:
    """Sorted indices of the document's rationale sentences (all entries), within range."""
    entries = evidence.get(str(doc_id)) or evidence.get(doc_id) or []  # type: ignore[call-overload]
    found = {
        int(i)
        for entry in entries
        if isinstance(entry, dict)
        for i in entry.get("sentences") or []
        if isinstance(i, int) and 0 <= i < count
    }
    return tuple(sorted(found))


def _label_for(evidence: dict[str, Any], doc_id: int, path: Path, number: int) -> int:
    entries = evidence.get(str(doc_id)) or evidence.get(doc_id)  # type: ignore[call-overload]
    if not entries:
        return LABEL2ID["NEI"]
    label = entries[0].get("label") if isinstance(entries[0], dict) else None
    if label not in LABEL2ID:
        raise DataFileError(f"{path}:{number}: unknown label {label!r} for document {doc_id}")
    return LABEL2ID[label]


def read_split(data_dir: Path, dataset: str, split: str) -> list[Example]:
    """Read one split of one dataset as (claim, cited document) examples.

    Raises:
        DataFileError: a file is missing or corrupt, or a claim cites a document that is
            not in the corpus; the message names the file (and line).
    """
    corpus_path = corpus_file(data_dir, dataset)
    claims_path = claims_file(data_dir, dataset, split)
    if not claims_path.is_file():
        list(_read_jsonl(claims_path))  # raises the "not found" error
    corpus = load_corpus(corpus_path)
    examples: list[Example] = []
    for number, row in _read_jsonl(claims_path):
        try:
            claim = str(row["claim"]).strip()
            claim_id = int(row["id"])
            cited = [int(d) for d in row["cited_doc_ids"]]
            evidence = row.get("evidence") or {}
        except (KeyError, TypeError, ValueError) as error:
            raise DataFileError(f"{claims_path}:{number}: bad claim row ({error!r})") from None
        for doc_id in dict.fromkeys(cited):  # a document cited twice counts once
            if doc_id not in corpus:
                raise DataFileError(
                    f"{claims_path}:{number}: cited document {doc_id} is not in {corpus_path}"
                )
            sentences = corpus[doc_id]
            examples.append(
                Example(
                    claim=claim,
                    evidence=" ".join(sentences),
                    label=_label_for(evidence, doc_id, claims_path, number),
                    dataset=dataset,
                    split=split,
                    claim_id=claim_id,
                    doc_id=doc_id,
                    sentences=sentences,
                    rationale=_rationale_for(evidence, doc_id, len(sentences)),
                )
            )
    return examples


def read_splits(
    data_dir: Path, datasets: Sequence[str], split: str, seed: int | None = None
) -> list[Example]:
    """Read ``split`` of several datasets, combined; shuffled deterministically by ``seed``."""
    combined = [ex for name in datasets for ex in read_split(data_dir, name, split)]
    return shuffled(combined, seed) if seed is not None else combined


def shuffled(examples: Iterable[Example], seed: int) -> list[Example]:
    """A deterministic shuffle: the same seed gives the same order on every machine."""
    items = list(examples)
    random.Random(seed).shuffle(items)
    return items


def available_splits(data_dir: Path) -> dict[str, list[str]]:
    """Datasets (sub-folders with a corpus) and the splits present in each."""
    found: dict[str, list[str]] = {}
    root = Path(data_dir)
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if (p / CORPUS_FILE).is_file()):
        splits = [s for s in SPLITS if claims_file(root, folder.name, s).is_file()]
        if splits:
            found[folder.name] = splits
    return found


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    counts = Counter(ex.label for ex in examples)
    return {label: counts.get(i, 0) for i, label in enumerate(LABELS)}


def dataset_stats(data_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dataset: {split: {"examples": N, "labels": {label: n}}}}`` for all that is found."""
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset, splits in available_splits(data_dir).items():
        stats[dataset] = {}
        for split in splits:
            examples = read_split(data_dir, dataset, split)
            stats[dataset][split] = {"examples": len(examples), "labels": label_counts(examples)}
    return stats


def normalise_claim(text: str) -> str:
    """The form used to compare claims across sources (case and whitespace folded)."""
    return " ".join(text.casefold().split())


def files_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the given files' bytes, in order: a dataset version for tracking."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
