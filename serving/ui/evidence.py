"""Evidence from a PDF: its text (pypdf), split into sentences, the top ``k`` for the
claim by the BM25 ranking the model's own evidence selection uses
(:func:`~citeops.tasks.classifier.preprocess.bm25_scores`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from citeops.tasks.classifier.preprocess import bm25_scores, split_sentences
from citeops.tasks.errors import CiteopsError

_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_SPACES = re.compile(r"\s+")


class UnreadablePdf(CiteopsError):
    """The upload is not a PDF pypdf can read, or holds no extractable text."""


@dataclass(frozen=True)
class Retrieved:
    """One evidence sentence: where it is in the document, its text, its BM25 score."""

    position: int
    sentence: str
    score: float


def pdf_text(path: Path) -> str:
    """The text of every page, line-break hyphenation undone and whitespace collapsed.

    Raises:
        UnreadablePdf: not a readable PDF, or no text in it (a scanned image, say).
    """
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        pages = [page.extract_text() or "" for page in PdfReader(path).pages]
    except (PyPdfError, OSError, ValueError) as error:
        raise UnreadablePdf(f"cannot read {path.name} as a PDF: {error}") from None
    text = _SPACES.sub(" ", _HYPHEN_BREAK.sub(r"\1\2", "\n".join(pages))).strip()
    if not text:
        raise UnreadablePdf(f"{path.name} holds no extractable text (a scanned PDF?)")
    return text


def top_sentences(claim: str, text: str, k: int) -> list[Retrieved]:
    """The ``k`` sentences of ``text`` that score highest for ``claim`` (ties: the earlier
    first), returned in document order, as the model's evidence selection keeps them."""
    sentences = split_sentences(text)
    scores = bm25_scores(claim, sentences)
    best = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[: max(k, 0)]
    return [Retrieved(i, sentences[i], scores[i]) for i in sorted(best)]
