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
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from citeops.serving.credentials import (
    CredentialsUnavailable,
    FeedbackAuth,
    RateLimited,
    RateLimiter,
    Unauthorized,
)
from citeops.serving.logwriter import LogWriteFailed
from citeops.serving.metrics import refresh_gauges
from citeops.serving.predictions import Busy, NotReady
from citeops.serving.public import public_status, public_text
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
    auth = FeedbackAuth.from_settings(settings.feedback)
    limiter = RateLimiter(
        settings.feedback.rate_per_minute,
        settings.feedback.rate_burst,
        settings.feedback.rate_max_clients,
    )

    def is_admin(request: Request) -> bool:
        """The request carries the admin bearer token (any header text, ASCII or not)."""
        expected = settings.admin_secret()
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if expected is None or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))

    def require_admin(request: Request) -> None:
        if settings.admin_secret() is None:
            raise HTTPException(
                403,
                "admin routes are disabled: no admin token is configured "
                "(set CITEOPS_ADMIN_TOKEN and restart)",
            )
        if not is_admin(request):
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
            evidence = body.pairs[0].evidence_text
            check_text("pairs[0].evidence", evidence, state.predictions.limits.evidence)
        return JSONResponse({"predictions": await state.predictions.score(pairs)})

    @app.post("/feedback", status_code=202, response_model=FeedbackAccepted, tags=["feedback"])
    async def feedback(body: FeedbackRequest, request: Request) -> Response:
        """Store the label a user believes is right (AI4citations fields). The 202 comes
        after the line is in its log part file, so a process crash cannot lose it.

        Needs ``Authorization: Bearer <API key or app token>`` where
        ``feedback.require_credentials`` is on (401 without, 429 over the client's rate);
        the client id is written with the line."""
        client_id = auth.client_of(request.headers.get("authorization"))
        address = request.client.host if request.client else "unknown"
        limiter.check(client_id or f"address {address}")
        record = state.predictions.feedback_record(body, client_id)
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
    async def ready(request: Request) -> Response:
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
            detail = problem if is_admin(request) else public_text(problem)
            return JSONResponse({"ready": False, "detail": detail}, status_code=503)
        return JSONResponse({"ready": True, "slot": slot, "model_version": model.model_version})  # type: ignore[union-attr]

    @app.get("/version", tags=["status"])
    async def version(request: Request) -> dict[str, Any]:
        """Live and idle slots (model version and URI) and when the last swap happened.
        Without the admin token, model URIs that are not registry URIs and the load error
        are shown without filesystem paths (:mod:`citeops.serving.public`)."""
        status = {**state.bluegreen.slots.describe(), "load_error": state.bluegreen.load_error}
        return status if is_admin(request) else public_status(status)

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


def _unparsable_body(cause: BaseException) -> str:
    """What was wrong with a body FastAPI could not parse (it says only that it failed)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"not valid UTF-8 (byte 0x{cause.object[cause.start]:02x} at offset {cause.start})"
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply"
    if isinstance(cause, ValueError):
        return f"not valid JSON ({str(cause)[:200]})"
    return f"cannot be read ({type(cause).__name__})"


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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400 and error.__cause__ is not None:
            reason = _unparsable_body(error.__cause__)
            return JSONResponse({"detail": f"body: {reason}", "field": "body"}, status_code=400)
        return await http_exception_handler(request, error)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, error: Unauthorized) -> Response:
        return JSONResponse(
            {"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(CredentialsUnavailable)
    async def no_credentials(_: Request, error: CredentialsUnavailable) -> Response:
        return JSONResponse({"detail": str(error)}, status_code=403)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, error: RateLimited) -> Response:
        return JSONResponse(
            {"detail": str(error)},
            status_code=429,
            headers={"Retry-After": str(int(error.retry_after))},
        )

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
