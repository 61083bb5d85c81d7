"""What the app does, without Gradio: verify a pair (the evidence typed, or retrieved from
a PDF) through the same prediction service and micro-batcher as ``POST /predict``, and
send feedback through the same intake as ``POST /feedback``.

App users are anonymous. The app is server-side, so it needs no credential of its own;
each browser session gets a client id of its own (:func:`new_client_id`) under which its
feedback is rate-limited, logged (``client_id``, ``source: "app"``) and can be excluded
(``citeops feedback exclude --client app-...``). During an A/B experiment the session's
client id also keeps it on one arm.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.serving.schemas import FeedbackRequest
from citeops.serving.ui.evidence import Retrieved, pdf_text, top_sentences
from citeops.tasks.classifier.preprocess import Evidence, as_text

if TYPE_CHECKING:
    from citeops.serving.state import ServingState

SOURCE = "app"
CLIENT_PREFIX = "app-"
DEFAULT_TOP_K = 5


class NothingToRate(Exception):
    """Feedback was asked for before any prediction in this session."""


def new_client_id() -> str:
    """A fresh client id for one browser session (``app-`` and 32 hex digits)."""
    return f"{CLIENT_PREFIX}{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Answer:
    """One prediction as the app shows it, and what its feedback refers back to."""

    claim: str
    evidence: str  # the evidence the model saw, as one text (retrieved sentences joined)
    label: str
    probabilities: dict[str, float]
    model_version: str
    runtime: str
    slot: str
    request_id: str
    latency_ms: float
    retrieved: list[Retrieved] = field(default_factory=list)
    arm: str = "champion"  # challenger: the session is in an A/B experiment's share


class AppService:
    """The app's two actions on one serving app's parts."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def verify(
        self, claim: str, evidence: str, pdf: Path | None, top_k: int, client_id: str
    ) -> Answer:
        """Label ``claim`` against ``evidence``, or against the ``top_k`` sentences of
        ``pdf`` that BM25 ranks highest for it (a PDF wins over typed evidence).

        Raises:
            UnreadablePdf: the upload has no readable text.
            BadInput, NotReady, Busy: as ``POST /predict``.
        """
        retrieved: list[Retrieved] = []
        given: Evidence = evidence
        if pdf is not None:
            text = await asyncio.to_thread(pdf_text, pdf)
            retrieved = await asyncio.to_thread(top_sentences, claim, text, top_k)
            given = [r.sentence for r in retrieved]
        usage = getattr(self.state.metrics, "usage", None)
        if usage is not None:
            usage.record_client(client_id)
        t0 = time.perf_counter()
        (result,) = await self.state.predictions.score(
            [(claim, given)], source=SOURCE, client_id=client_id
        )
        latency_ms = round((time.perf_counter() - t0) * 1000.0, 1)
        return Answer(
            claim=claim,
            evidence=as_text(given),
            label=result["label"],
            probabilities=result["probabilities"],
            model_version=result["model_version"],
            runtime=self._runtime_of(result["slot"], result["model_version"]),
            slot=result["slot"],
            request_id=result["request_id"],
            latency_ms=latency_ms,
            retrieved=retrieved,
            arm=result["arm"],
        )

    def _runtime_of(self, slot: str, model_version: str) -> str:
        """The runtime of the model that answered (``unknown`` if swapped out since)."""
        model = self.state.bluegreen.slots.models.get(slot)
        if model is None or model.model_version != model_version:
            return "unknown"
        return f"{model.runtime} ({model.precision}, {model.device})"

    async def feedback(self, answer: Answer | None, user_label: str, client_id: str) -> str:
        """Send ``user_label`` for ``answer`` as ``client_id``; returns the feedback id.

        Raises:
            NothingToRate: no prediction yet in this session.
            RateLimited, BadInput, LogWriteFailed: as ``POST /feedback``.
        """
        if answer is None:
            raise NothingToRate("verify a claim first, then say which label is right")
        body = FeedbackRequest(
            request_id=answer.request_id,
            claim=answer.claim,
            evidence=answer.evidence,
            prediction=answer.label,
            user_label=user_label,
        )
        record: dict[str, Any] = await self.state.feedback.accept(
            body, client_id, rate_key=client_id, source=SOURCE
        )
        return str(record["feedback_id"])
