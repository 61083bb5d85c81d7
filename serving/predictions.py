"""Scoring requests on the live model, logging them, and the feedback records that refer
back to them.

Each request is answered by the model that was live when it arrived (it keeps a
reference to it), its query line goes to the log writer, and its provenance (slot, model
version, model URI, label) is remembered for a while so that feedback naming its
``request_id`` is attributed to the model that answered. Each answer and each feedback
record is counted in the usage metrics (:class:`~citeops.serving.metrics.UsageMetrics`)
with its ``source``: ``api`` (the HTTP routes, the default) or ``app``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.serving.batcher import MicroBatcher, QueueFull
from citeops.serving.logwriter import LogWriter, now_iso
from citeops.serving.schemas import (
    FeedbackRequest,
    TextLimits,
    check_label,
    check_pair,
    check_request_id,
)
from citeops.tasks.classifier.preprocess import Evidence, as_text

if TYPE_CHECKING:
    from citeops.serving.bluegreen import BlueGreen
    from citeops.serving.metrics import UsageMetrics
    from citeops.serving.slots import LoadedModel

PROVENANCE_SIZE = 50_000  # recent request ids remembered for feedback provenance


class NotReady(Exception):
    """No model is live (still loading, or it failed to load): HTTP 503."""


class Busy(Exception):
    """The request queue is full: HTTP 503 with ``Retry-After``."""


@dataclass(frozen=True)
class Provenance:
    """Which model answered a request."""

    slot: str
    model_version: str
    model_uri: str
    label: str


class PredictionService:
    """Scores pairs through the micro-batcher on the live slot and logs each answer."""

    def __init__(
        self,
        bluegreen: BlueGreen,
        batcher: MicroBatcher,
        writer: LogWriter,
        limits: TextLimits,
        provenance_size: int = PROVENANCE_SIZE,
        usage: UsageMetrics | None = None,
    ) -> None:
        """``usage``: where answers and feedback are counted (default: the usage metrics
        of ``bluegreen``'s metrics, if any)."""
        self.bluegreen = bluegreen
        metrics = getattr(bluegreen, "metrics", None)
        self.usage = usage or (metrics.usage if metrics is not None else None)
        self.batcher = batcher
        self.writer = writer
        self.limits = limits
        self.provenance_size = provenance_size
        self._provenance: OrderedDict[str, Provenance] = OrderedDict()

    def live_model(self) -> tuple[str, LoadedModel]:
        """``(slot, model)`` of the live slot.

        Raises:
            NotReady: with the reason (still loading, or the load error).
        """
        slot, model = self.bluegreen.live
        if model is None:
            raise NotReady(self.bluegreen.load_error or "the live model is still loading")
        return slot, model

    async def score(
        self, pairs: list[tuple[str, Evidence]], source: str = "api"
    ) -> list[dict[str, Any]]:
        """One answer per pair, in order (the :class:`~citeops.serving.schemas.Prediction`
        fields). An evidence is one text or a list of sentences; the model gets it as
        given, the checks and the query log see it as one text (joined by spaces). Each
        answer is counted under ``source`` (``api`` | ``app``).

        Raises:
            BadInput: a text is empty, too long or not storable (named ``pairs[i].claim``
                when there are several pairs).
            NotReady: no model is live.
            Busy: the batcher's queue is full.
        """
        t0 = time.perf_counter()
        many = len(pairs) > 1
        texts = [as_text(evidence) for _, evidence in pairs]
        for i, ((claim, _), evidence) in enumerate(zip(pairs, texts, strict=True)):
            check_pair(f"pairs[{i}]." if many else "", claim, evidence, self.limits)
        slot, model = self.live_model()
        encoded = [model.verifier.encode_pair(c, e) for c, e in pairs]
        try:
            futures = self.batcher.submit_many(model, encoded)
        except QueueFull as error:
            raise Busy(str(error)) from None
        results = await asyncio.gather(*futures)
        answers = [
            self._answer(slot, model, c, e, probs, t0)
            for (c, _), e, probs in zip(pairs, texts, results, strict=True)
        ]
        if self.usage is not None:
            for (claim, _), evidence in zip(pairs, texts, strict=True):
                self.usage.record_prediction(model.model_version, claim, evidence, source=source)
        return answers

    def _answer(
        self, slot: str, model: LoadedModel, claim: str, evidence: str, probs: np.ndarray, t0: float
    ) -> dict[str, Any]:
        """The response for one pair; also logs the query line and remembers provenance."""
        labels = model.verifier.labels
        label = labels[int(probs.argmax())]
        request_id = uuid.uuid4().hex
        probabilities = {name: round(float(p), 6) for name, p in zip(labels, probs, strict=True)}
        latency_ms = round((time.perf_counter() - t0) * 1000.0, 2)
        self.writer.write(
            "queries",
            {
                "request_id": request_id,
                "datetime": now_iso(),
                "claim": claim,
                "evidence": evidence,
                "model_version": model.model_version,
                "slot": slot,
                "prediction": label,
                "probabilities": probabilities,
                "latency_ms": latency_ms,
            },
        )
        self._remember(request_id, Provenance(slot, model.model_version, model.model_uri, label))
        self.bluegreen.remember(model, claim, evidence, label)
        return {
            "label": label,
            "probabilities": probabilities,
            "model_version": model.model_version,
            "slot": slot,
            "request_id": request_id,
        }

    def _remember(self, request_id: str, provenance: Provenance) -> None:
        self._provenance[request_id] = provenance
        if len(self._provenance) > self.provenance_size:
            self._provenance.popitem(last=False)

    def provenance(self, request_id: str | None) -> Provenance | None:
        """Who answered ``request_id``, while it is still remembered."""
        return self._provenance.get(request_id) if request_id else None

    def feedback_record(
        self, body: FeedbackRequest, client_id: str | None = None, source: str = "api"
    ) -> dict[str, Any]:
        """The feedback log line for ``body``, with provenance filled in from its
        ``request_id``, a new ``feedback_id``, and ``client_id`` (the authenticated
        client; the key is left out for anonymous feedback, as in older lines). The
        accepted item is counted under ``source`` (``api`` | ``app``): its label, and its
        agreement with the model where the prediction is known.

        Raises:
            BadInput: a text or label is unacceptable, or the request id is too long.
        """
        check_pair("", body.claim, body.evidence, self.limits)
        check_request_id("request_id", body.request_id, self.limits)
        live = self.bluegreen.live[1]
        labels = self.bluegreen.expected_labels()
        user_label = check_label("user_label", body.user_label, labels)
        prediction = check_label("prediction", body.prediction, labels) if body.prediction else None
        known = self.provenance(body.request_id)
        record = {
            "claim": body.claim,
            "evidence": body.evidence,
            "model": known.model_uri if known else (live.model_uri if live else None),
            "prediction": prediction or (known.label if known else None),
            "user_label": user_label,
            "datetime": now_iso(),
            "request_id": body.request_id,
            "model_version": known.model_version if known else None,
            "slot": known.slot if known else None,
            "feedback_id": uuid.uuid4().hex,
        }
        if client_id is not None:
            record["client_id"] = client_id
        if self.usage is not None:
            self.usage.record_feedback(
                record["model_version"], record["prediction"], user_label, source=source
            )
        return record
