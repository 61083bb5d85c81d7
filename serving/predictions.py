"""Scoring requests on the live model, logging them, and the feedback records that refer
back to them.

Each request is answered by the model that was live when it arrived (it keeps a
reference to it), its query line goes to the log writer, and its provenance (slot, model
version, model URI, label) is remembered for a while so that feedback naming its
``request_id`` is attributed to the model that answered. Each answer and each feedback
record is counted in the usage metrics (:class:`~citeops.serving.metrics.UsageMetrics`)
with its ``arm`` and ``source``: ``api`` (the HTTP routes, the default) or ``app``.

During an online phase (:mod:`citeops.serving.online`) the model that answers is the
request's arm's (``split``), and in ``shadow`` mode the champion answers while the
challenger scores a copy; answers, query lines, provenance and feedback lines carry the
``arm`` and ``model_version`` that answered.
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
from citeops.serving.experiment import CHAMPION
from citeops.serving.logwriter import LogWriter, now_iso
from citeops.serving.online import Route
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
    from citeops.serving.online import OnlinePhase
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
    arm: str = CHAMPION


@dataclass(frozen=True)
class Asked:
    """What one request brought beside its pairs: its route, who asked, from where, when."""

    route: Route
    client_id: str | None
    source: str
    t0: float


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
        online: OnlinePhase | None = None,
    ) -> None:
        """``usage``: where answers and feedback are counted (default: the usage metrics
        of ``bluegreen``'s metrics, if any); ``online``: the online phase that routes
        requests (None: the live model answers everything, as the champion)."""
        self.bluegreen = bluegreen
        self.online = online
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

    def route(self, client_id: str | None) -> Route:
        """Who answers a request of ``client_id`` (:meth:`OnlinePhase.route`).

        Raises:
            NotReady: no model is live.
        """
        slot, model = self.live_model()
        if self.online is None:
            return Route(CHAMPION, slot, model)
        return self.online.route(client_id, slot, model)

    async def score(
        self, pairs: list[tuple[str, Evidence]], source: str = "api", client_id: str | None = None
    ) -> list[dict[str, Any]]:
        """One answer per pair, in order (the :class:`~citeops.serving.schemas.Prediction`
        fields). An evidence is one text or a list of sentences; the model gets it as
        given, the checks and the query log see it as one text (joined by spaces). Each
        answer is counted under its arm and ``source`` (``api`` | ``app``); ``client_id``
        (the authenticated client, the ``X-Client-Id`` header or the app session) decides
        the arm during an A/B experiment and is logged.

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
        route = self.route(client_id)
        model = route.model
        encoded = [model.verifier.encode_pair(c, e) for c, e in pairs]
        try:
            futures = self.batcher.submit_many(model, encoded)
        except QueueFull as error:
            raise Busy(str(error)) from None
        results = await asyncio.gather(*futures)
        asked = Asked(route, client_id, source, t0)
        answers = [
            self._answer(asked, claim, given, text, probs)
            for (claim, given), text, probs in zip(pairs, texts, results, strict=True)
        ]
        if self.online is not None:
            self.online.answered(route, len(pairs))
        if self.usage is not None:
            for (claim, _), evidence in zip(pairs, texts, strict=True):
                self.usage.record_prediction(
                    model.model_version, claim, evidence, arm=route.arm, source=source
                )
        return answers

    def _answer(
        self, asked: Asked, claim: str, given: Evidence, evidence: str, probs: np.ndarray
    ) -> dict[str, Any]:
        """The response for one pair; also logs the query line (through the shadow queue
        when the request is mirrored) and remembers provenance."""
        route, model = asked.route, asked.route.model
        labels = model.verifier.labels
        label = labels[int(probs.argmax())]
        request_id = uuid.uuid4().hex
        probabilities = {name: round(float(p), 6) for name, p in zip(labels, probs, strict=True)}
        latency_ms = round((time.perf_counter() - asked.t0) * 1000.0, 2)
        record = {
            "request_id": request_id,
            "datetime": now_iso(),
            "claim": claim,
            "evidence": evidence,
            "model_version": model.model_version,
            "slot": route.slot,
            "arm": route.arm,
            "source": asked.source,
            "prediction": label,
            "probabilities": probabilities,
            "latency_ms": latency_ms,
        }
        if asked.client_id is not None:
            record["client_id"] = asked.client_id
        if route.shadow is not None and self.online is not None:
            self.online.mirror(route, claim, given, record)
        else:
            self.writer.write("queries", record)
        provenance = Provenance(route.slot, model.model_version, model.model_uri, label, route.arm)
        self._remember(request_id, provenance)
        self.bluegreen.remember(model, claim, evidence, label)
        return {
            "label": label,
            "probabilities": probabilities,
            "model_version": model.model_version,
            "slot": route.slot,
            "arm": route.arm,
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
            "arm": known.arm if known else None,
            "feedback_id": uuid.uuid4().hex,
        }
        if client_id is not None:
            record["client_id"] = client_id
        if self.usage is not None:
            self.usage.record_feedback(
                record["model_version"],
                record["prediction"],
                user_label,
                arm=known.arm if known else CHAMPION,
                source=source,
            )
        return record
