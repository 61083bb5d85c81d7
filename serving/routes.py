"""The HTTP surface: routes and the mapping of errors to status codes.

Routes only translate between HTTP and the parts that do the work
(:class:`~citeops.serving.predictions.PredictionService`,
:class:`~citeops.serving.bluegreen.BlueGreen`, the log writer). Every refusal is a JSON
``{"detail": "<field>: <why>", "field": ...}`` or ``{"detail": ...}`` with a 4xx or 503.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from citeops.serving.logwriter import LogWriteFailed
from citeops.serving.metrics import refresh_gauges
from citeops.serving.predictions import Busy, NotReady
from citeops.serving.schemas import (
    BadInput,
    BatchRequest,
    BatchResponse,
    DeployRequest,
    FeedbackAccepted,
    FeedbackRequest,
    Prediction,
    PredictRequest,
    check_text,
)
from citeops.serving.slots import CandidateRejected, DeployConflict, SlotError

if TYPE_CHECKING:
    from citeops.serving.app import ServingState

log = logging.getLogger(__name__)
STUCK_BATCH_SECONDS = 60.0
MAX_URI_CHARS = 4096


def add_routes(app: FastAPI, state: ServingState) -> None:
    """Register predict, feedback, status and admin routes on ``app``."""
    settings = state.settings

    def require_admin(request: Request) -> None:
        expected = settings.admin_secret()
        if expected is None:
            raise HTTPException(
                403,
                "admin routes are disabled: no admin token is configured "
                "(set CITEOPS_ADMIN_TOKEN and restart)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
            raise HTTPException(
                401,
                "missing or wrong admin token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.post("/predict", response_model=Prediction, tags=["predict"])
    async def predict(body: PredictRequest) -> Response:
        """Label one (claim, evidence) pair."""
        (result,) = await state.predictions.score([(body.claim, body.evidence)])
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
        if len(pairs) == 1:  # score() names a lone pair's fields without the prefix
            check_text("pairs[0].claim", pairs[0][0], state.predictions.limits.claim)
            check_text("pairs[0].evidence", pairs[0][1], state.predictions.limits.evidence)
        return JSONResponse({"predictions": await state.predictions.score(pairs)})

    @app.post("/feedback", status_code=202, response_model=FeedbackAccepted, tags=["feedback"])
    async def feedback(body: FeedbackRequest) -> Response:
        """Store the label a user believes is right (AI4citations fields). The 202 comes
        after the line is in its log part file, so a process crash cannot lose it."""
        record = state.predictions.feedback_record(body)
        timeout = settings.serve.feedback_write_timeout_seconds
        await state.writer.write_durable("feedback", record, timeout)
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
        slot, model = state.bluegreen.live
        problem = None
        if model is None:
            problem = state.bluegreen.load_error or "the live model is still loading"
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
        return {**state.bluegreen.slots.describe(), "load_error": state.bluegreen.load_error}

    @app.get("/metrics", tags=["status"])
    async def metrics() -> Response:
        """Prometheus text format."""
        refresh_gauges(
            state.metrics, state.bluegreen.slots, state.writer.stats, state.batcher.depth
        )
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/admin/deploy", tags=["admin"], dependencies=[Depends(require_admin)])
    async def deploy(body: DeployRequest) -> dict[str, Any]:
        """Load a model into the idle slot, smoke-check it, then make it live."""
        check_text("model_uri", body.model_uri, MAX_URI_CHARS)
        return (await state.bluegreen.deploy(body.model_uri)).as_dict()

    @app.post("/admin/rollback", tags=["admin"], dependencies=[Depends(require_admin)])
    async def rollback() -> dict[str, Any]:
        """Make the previous model (in the idle slot) live again."""
        return (await state.bluegreen.rollback()).as_dict()


def _field_name(location: tuple[Any, ...]) -> str:
    """``("body", "pairs", 1, "claim")`` -> ``pairs[1].claim``; the body itself -> ``body``."""
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in location]
    return ".".join(p for p in parts if p != "body").replace(".[", "[") or "body"


def _retry_later(detail: str, seconds: int) -> Response:
    """503 with ``Retry-After``: the request was fine, the server cannot take it now."""
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(seconds)})


def add_error_handlers(app: FastAPI) -> None:
    """Map the serving exceptions to status codes and JSON bodies."""

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
        name = _field_name(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if name == "body":
            message = f"expected a JSON object ({message})"
        return JSONResponse({"detail": f"{name}: {message}", "field": name}, status_code=422)

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, error: NotReady) -> Response:
        return _retry_later(f"not ready: {error}", seconds=2)

    @app.exception_handler(Busy)
    async def busy(_: Request, error: Busy) -> Response:
        return _retry_later(f"busy: request queue is full ({error}); retry shortly", seconds=1)

    @app.exception_handler(LogWriteFailed)
    async def not_stored(_: Request, error: LogWriteFailed) -> Response:
        return _retry_later(f"not stored: {error}; nothing was acknowledged, retry", seconds=1)

    @app.exception_handler(DeployConflict)
    async def conflict(_: Request, error: DeployConflict) -> Response:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(CandidateRejected)
    async def rejected(_: Request, error: CandidateRejected) -> Response:
        return JSONResponse(
            {"detail": f"candidate rejected, live slot unchanged: {error}"}, status_code=422
        )

    @app.exception_handler(SlotError)
    async def slot_error(_: Request, error: SlotError) -> Response:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return JSONResponse(
            {"detail": f"internal error: {type(error).__name__}: {error}"}, status_code=500
        )
