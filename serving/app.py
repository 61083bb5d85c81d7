"""The FastAPI app: predict, feedback, health, metrics, and the admin deploy / rollback.

Build it with :func:`create_app`; nothing is loaded until the app starts (its lifespan):
then the log writer and the batcher start, and the live model loads in the background
(``/health`` answers at once, ``/ready`` once the live slot answers).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from citeops.serving.batcher import MicroBatcher, QueueFull
from citeops.serving.logwriter import LogWriter, build_log_writer, now_iso
from citeops.serving.metrics import ServingMetrics, build_metrics
from citeops.serving.middleware import MetricsAndLimits
from citeops.serving.schemas import (
    BadInput,
    BatchRequest,
    BatchResponse,
    DeployRequest,
    FeedbackAccepted,
    FeedbackRequest,
    Prediction,
    PredictRequest,
    check_label,
    check_text,
)
from citeops.serving.slots import (
    SMOKE_PAIRS,
    STATE_FILE,
    CandidateRejected,
    DeployConflict,
    LoadedModel,
    SlotError,
    Slots,
    agreement,
    check_smoke_outputs,
    wrap_verifier,
)

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.model.predictor import ClaimVerifier

log = logging.getLogger("citeops.serving")
Loader = Callable[[str], "ClaimVerifier"]
PROVENANCE_SIZE = 50_000  # recent request ids remembered for feedback provenance
RECENT_QUERIES = 64  # recent live predictions kept for the candidate agreement check
STUCK_BATCH_SECONDS = 60.0


def champion_uri(settings: Settings) -> str:
    """The URI served when none is given and no slot state exists."""
    return f"models:/{settings.mlflow.registered_model}@champion"


def apply_omp_wait_policy(settings: Settings) -> None:
    """Set ``OMP_WAIT_POLICY`` from ``serve.omp_wait_policy`` (before torch is imported;
    OpenMP reads it once when it loads)."""
    import os
    import sys

    policy = settings.serve.omp_wait_policy
    if policy == "inherit":
        return
    if "torch" in sys.modules:
        log.warning("serve.omp_wait_policy has no effect: torch is already imported")
    os.environ["OMP_WAIT_POLICY"] = policy.upper()


def startup_uri(settings: Settings, explicit: str | None) -> tuple[str, str]:
    """``(URI to load, URI to show)`` for the live slot at start: the explicit URI, else
    the persisted live slot (its pinned version), else the champion alias."""
    if explicit:
        return explicit, explicit
    state = Slots(settings.state_dir / STATE_FILE).state
    record = state.slots.get(state.live)
    if record is not None:
        return record.pinned_uri, record.model_uri
    return champion_uri(settings), champion_uri(settings)


def default_loader(settings: Settings) -> Loader:
    """Load by URI or folder with the serving precision (``settings.serve.precision``)."""

    def load(model_uri: str) -> ClaimVerifier:
        from citeops.tasks.model.predictor import load_verifier

        return load_verifier(model_uri, settings, settings.serve.precision)

    return load


@dataclass
class ServingState:
    """Everything the routes share; one per app."""

    settings: Settings
    slots: Slots
    batcher: MicroBatcher
    writer: LogWriter
    metrics: ServingMetrics
    loader: Loader
    model_uri: str | None
    initial: LoadedModel | None = None
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    provenance: OrderedDict[str, tuple[str, str, str, str]] = field(default_factory=OrderedDict)
    recent: deque[tuple[str, str, str]] = field(
        default_factory=lambda: deque(maxlen=RECENT_QUERIES)
    )
    load_error: str | None = None
    loading: bool = True
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    # ---- predictions --------------------------------------------------------------------
    def live_or_503(self) -> tuple[str, LoadedModel]:
        slot, model = self.slots.live
        if model is None:
            reason = self.load_error or "the live model is still loading"
            raise HTTPException(503, f"not ready: {reason}", headers={"Retry-After": "2"})
        return slot, model

    def answer(
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
        self.provenance[request_id] = (slot, model.model_version, model.model_uri, label)
        if len(self.provenance) > PROVENANCE_SIZE:
            self.provenance.popitem(last=False)
        if model is self.slots.live[1]:
            self.recent.append((claim, evidence, label))
        return {
            "label": label,
            "probabilities": probabilities,
            "model_version": model.model_version,
            "slot": slot,
            "request_id": request_id,
        }

    async def score(self, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        max_chars = self.settings.serve.max_text_chars
        many = len(pairs) > 1
        for i, (claim, evidence) in enumerate(pairs):
            prefix = f"pairs[{i}]." if many else ""
            check_text(prefix + "claim", claim, max_chars)
            check_text(prefix + "evidence", evidence, max_chars)
        slot, model = self.live_or_503()
        encoded = [model.verifier.encode_pair(c, e) for c, e in pairs]
        try:
            futures = self.batcher.submit_many(model, encoded)
        except QueueFull as error:
            raise HTTPException(
                503,
                f"busy: request queue is full ({error}); retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        results = await asyncio.gather(*futures)
        return [
            self.answer(slot, model, c, e, probs, t0)
            for (c, e), probs in zip(pairs, results, strict=True)
        ]

    # ---- model slots --------------------------------------------------------------------
    async def load_initial(self) -> None:
        """Live slot first (explicit URI, else persisted state, else champion), then the
        idle slot's persisted model in the background so that rollback is instant."""
        live_name = self.slots.live[0]
        try:
            if self.initial is not None:
                self.slots.install(live_name, self.initial)
            else:
                load_uri, shown_uri = startup_uri(self.settings, self.model_uri)
                verifier = await asyncio.to_thread(self.loader, load_uri)
                self.slots.install(live_name, wrap_verifier(verifier, shown_uri, load_uri))
            log.info("live slot %s: %s", live_name, self.slots.live[1].model_uri)  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - reported by /ready and /version
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("live model failed to load: %s", self.load_error)
        finally:
            self.loading = False
        idle_name = self.slots.idle_name
        record = self.slots.state.slots.get(idle_name)
        if record is not None and self.slots.models[idle_name] is None:
            try:
                verifier = await asyncio.to_thread(self.loader, record.pinned_uri)
                model = wrap_verifier(verifier, record.model_uri, record.pinned_uri)
                self.slots.models[idle_name] = model
            except Exception as error:  # noqa: BLE001 - rollback then says it is unavailable
                log.warning("idle slot %s (%s) not loaded: %s", idle_name, record.pinned_uri, error)

    async def smoke_check(self, candidate: LoadedModel) -> None:
        """Well-formed outputs on the fixed pairs, and agreement with the live model on
        recent queries when ``serve.smoke_agreement_threshold`` > 0.

        Raises:
            CandidateRejected: with the reason.
        """
        live = self.slots.live[1]
        expected = live.verifier.labels if live else tuple(self.settings.model.labels)
        verifier = candidate.verifier
        try:
            encoded = [verifier.encode_pair(c, e) for c, e in SMOKE_PAIRS]
            probs = await self.batcher.run_exclusive(verifier.predict_encoded, encoded)
        except Exception as error:  # noqa: BLE001 - any failure rejects the candidate
            raise CandidateRejected(
                f"smoke check: the candidate raised {type(error).__name__}: {error}"
            ) from None
        check_smoke_outputs(np.asarray(probs), verifier.labels, expected)
        threshold = self.settings.serve.smoke_agreement_threshold
        recent = list(self.recent)
        if threshold <= 0 or len(recent) < 10:
            return
        labels: list[str] = []
        step = self.settings.serve.max_batch_size
        for start in range(0, len(recent), step):
            chunk = [verifier.encode_pair(c, e) for c, e, _ in recent[start : start + step]]
            out = await self.batcher.run_exclusive(verifier.predict_encoded, chunk)
            labels.extend(verifier.labels[int(i)] for i in np.asarray(out).argmax(axis=1))
        score = agreement(labels, [label for _, _, label in recent])
        if score < threshold:
            raise CandidateRejected(
                f"smoke check: agreement with the live model on {len(recent)} recent queries "
                f"is {score:.3f}, below serve.smoke_agreement_threshold {threshold}"
            )

    async def deploy(self, model_uri: str) -> dict[str, Any]:
        if self.admin_lock.locked():
            raise DeployConflict("another deploy or rollback is in progress; try again")
        async with self.admin_lock:
            before = self.slots.describe()["live"]
            try:
                verifier = await asyncio.to_thread(self.loader, model_uri)
            except Exception as error:  # noqa: BLE001 - the reason goes back to the caller
                self.metrics.deploy_failures.inc()
                raise CandidateRejected(f"cannot load {model_uri}: {error}") from None
            candidate = wrap_verifier(verifier, model_uri)
            try:
                await self.smoke_check(candidate)
            except CandidateRejected:
                self.metrics.deploy_failures.inc()
                raise
            idle = self.slots.idle_name
            self.slots.install(idle, candidate)
            self.slots.switch_to(idle, "deploy")
            self.load_error = None
            self.recent.clear()
            self.metrics.swaps.labels("deploy").inc()
            return {"before": before, "after": self.slots.describe()["live"]}

    async def rollback(self) -> dict[str, Any]:
        if self.admin_lock.locked():
            raise DeployConflict("another deploy or rollback is in progress; try again")
        async with self.admin_lock:
            idle = self.slots.idle_name
            if self.slots.models[idle] is None:
                state = "is still loading" if idle in self.slots.state.slots else "holds no model"
                raise SlotError(f"nothing to roll back to: the idle slot {idle} {state}")
            before = self.slots.describe()["live"]
            self.slots.switch_to(idle, "rollback")
            self.recent.clear()
            self.metrics.swaps.labels("rollback").inc()
            return {"before": before, "after": self.slots.describe()["live"]}

    def refresh_gauges(self) -> None:
        info = self.metrics.model_info
        info.clear()
        live_name = self.slots.live[0]
        for name, model in self.slots.models.items():
            if model is not None:
                info.labels(name, model.model_version, model.model_uri).set(int(name == live_name))
        for stream, count in self.writer.stats.lines.items():
            self.metrics.log_lines.labels(stream).set(count)
        self.metrics.log_dropped.set(self.writer.stats.dropped)
        self.metrics.queue_depth.set(self.batcher.depth)


def create_app(
    settings: Settings,
    model_uri: str | None = None,
    *,
    loader: Loader | None = None,
    initial: ClaimVerifier | None = None,
) -> FastAPI:
    """The serving app for ``settings``.

    Args:
        model_uri: what to serve at start; default: the persisted live slot, else
            ``models:/<registered_model>@champion``.
        loader: loads a model URI into a verifier (default: :func:`load_verifier` with
            ``settings.serve.precision``); used for the start-up model and deploys.
        initial: an already loaded verifier for ``model_uri`` (the CLI loads it first so
            that a bad URI stops the command with one clear line).
    """
    metrics = build_metrics()
    serve = settings.serve
    state = ServingState(
        settings=settings,
        slots=Slots(settings.state_dir / STATE_FILE),
        batcher=MicroBatcher(
            serve.max_batch_size,
            serve.max_wait_ms,
            serve.queue_size,
            metrics,
            max_batch_tokens=serve.max_batch_tokens,
        ),
        writer=build_log_writer(settings),
        metrics=metrics,
        loader=loader or default_loader(settings),
        model_uri=model_uri,
        initial=wrap_verifier(initial, *startup_uri(settings, model_uri)[::-1])
        if initial
        else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if serve.threads:
            import torch

            torch.set_num_threads(serve.threads)
        if settings.admin_token is None:
            log.warning("admin routes are disabled: no admin token (set CITEOPS_ADMIN_TOKEN)")
        state.writer.start()
        state.batcher.start()
        state.tasks.append(asyncio.create_task(state.load_initial()))
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            await state.batcher.stop()
            await asyncio.to_thread(state.writer.close)

    app = FastAPI(
        title="citeops claim verification",
        version="1",
        description="Claim + evidence -> SUPPORT / NEI / REFUTE, with blue-green model slots.",
        lifespan=lifespan,
    )
    app.state.serving = state
    app.add_middleware(MetricsAndLimits, metrics=metrics, max_body_bytes=serve.max_body_bytes)
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


def _add_routes(app: FastAPI, state: ServingState) -> None:
    settings = state.settings

    def require_admin(request: Request) -> None:
        token = settings.admin_token
        if token is None:
            raise HTTPException(
                403,
                "admin routes are disabled: no admin token is configured "
                "(set CITEOPS_ADMIN_TOKEN and restart)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
            raise HTTPException(
                401,
                "missing or wrong admin token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.post("/predict", response_model=Prediction, tags=["predict"])
    async def predict(body: PredictRequest) -> Response:
        """Label one (claim, evidence) pair."""
        (result,) = await state.score([(body.claim, body.evidence)])
        return JSONResponse(result)

    @app.post("/predict/batch", response_model=BatchResponse, tags=["predict"])
    async def predict_batch(body: BatchRequest) -> Response:
        """Label up to ``serve.max_batch_request`` pairs in one call."""
        limit = settings.serve.max_batch_request
        if not body.pairs:
            raise BadInput("pairs", "must hold at least one pair")
        if len(body.pairs) > limit:
            raise BadInput("pairs", f"holds {len(body.pairs)} pairs; at most {limit} are accepted")
        pairs = [(p.claim, p.evidence) for p in body.pairs]
        if len(pairs) == 1:
            check_text("pairs[0].claim", pairs[0][0], settings.serve.max_text_chars)
            check_text("pairs[0].evidence", pairs[0][1], settings.serve.max_text_chars)
        return JSONResponse({"predictions": await state.score(pairs)})

    @app.post("/feedback", status_code=202, response_model=FeedbackAccepted, tags=["feedback"])
    async def feedback(body: FeedbackRequest) -> Response:
        """Store the label a user believes is right (AI4citations fields)."""
        max_chars = settings.serve.max_text_chars
        check_text("claim", body.claim, max_chars)
        check_text("evidence", body.evidence, max_chars)
        live = state.slots.live[1]
        labels = live.verifier.labels if live else tuple(settings.model.labels)
        user_label = check_label("user_label", body.user_label, labels)
        prediction = check_label("prediction", body.prediction, labels) if body.prediction else None
        known = state.provenance.get(body.request_id) if body.request_id else None
        record: dict[str, Any] = {
            "claim": body.claim,
            "evidence": body.evidence,
            "model": known[2] if known else (live.model_uri if live else None),
            "prediction": prediction or (known[3] if known else None),
            "user_label": user_label,
            "datetime": now_iso(),
            "request_id": body.request_id,
            "model_version": known[1] if known else None,
            "slot": known[0] if known else None,
            "feedback_id": uuid.uuid4().hex,
        }
        state.writer.write("feedback", record)
        return JSONResponse(
            {"id": record["feedback_id"], "request_id": body.request_id}, status_code=202
        )

    @app.get("/health", tags=["status"])
    async def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["status"])
    async def ready() -> Response:
        """The live slot holds a model and the batcher is answering."""
        slot, model = state.slots.live
        problem = None
        if model is None:
            problem = state.load_error or "the live model is still loading"
        elif not state.batcher.running:
            problem = "the batcher is not running"
        elif (
            state.batcher.busy_since
            and time.monotonic() - state.batcher.busy_since > STUCK_BATCH_SECONDS
        ):
            problem = f"a batch has been running for over {STUCK_BATCH_SECONDS:.0f} s"
        if problem:
            return JSONResponse({"ready": False, "detail": problem}, status_code=503)
        return JSONResponse({"ready": True, "slot": slot, "model_version": model.model_version})  # type: ignore[union-attr]

    @app.get("/version", tags=["status"])
    async def version() -> dict[str, Any]:
        """Live and idle slots (model version and URI) and when the last swap happened."""
        return {**state.slots.describe(), "load_error": state.load_error}

    @app.get("/metrics", tags=["status"])
    async def metrics() -> Response:
        """Prometheus text format."""
        state.refresh_gauges()
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/admin/deploy", tags=["admin"], dependencies=[Depends(require_admin)])
    async def deploy(body: DeployRequest) -> dict[str, Any]:
        """Load a model into the idle slot, smoke-check it, then make it live."""
        check_text("model_uri", body.model_uri, 4096)
        return await state.deploy(body.model_uri)

    @app.post("/admin/rollback", tags=["admin"], dependencies=[Depends(require_admin)])
    async def rollback() -> dict[str, Any]:
        """Make the previous model (in the idle slot) live again."""
        return await state.rollback()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadInput)
    async def bad_input(_: Request, error: BadInput) -> Response:
        return JSONResponse({"detail": str(error), "field": error.field}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        if first.get("type") == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "")
            return JSONResponse(
                {"detail": f"body: not valid JSON ({reason})".replace(" ()", ""), "field": "body"},
                status_code=400,
            )
        parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in first.get("loc", ())]
        name = ".".join(p for p in parts if p != "body").replace(".[", "[") or "body"
        message = first.get("msg", "invalid")
        if name == "body":
            message = f"expected a JSON object ({message})"
        return JSONResponse({"detail": f"{name}: {message}", "field": name}, status_code=422)

    @app.exception_handler(DeployConflict)
    async def conflict(_: Request, error: DeployConflict) -> Response:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(CandidateRejected)
    async def rejected(_: Request, error: CandidateRejected) -> Response:
        return JSONResponse(
            {"detail": f"candidate rejected, live slot unchanged: {error}"}, status_code=422
        )

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return JSONResponse(
            {"detail": f"internal error: {type(error).__name__}: {error}"}, status_code=500
        )

    @app.exception_handler(SlotError)
    async def slot_error(_: Request, error: SlotError) -> Response:
        return JSONResponse({"detail": str(error)}, status_code=409)
