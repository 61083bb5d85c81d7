"""The HTTP surface: one router per tag (predict, feedback, status, admin).

Routes only translate between HTTP and the parts that do the work
(:class:`~citeops.serving.predictions.PredictionService`,
:class:`~citeops.serving.feedback.FeedbackIntake`,
:class:`~citeops.serving.bluegreen.BlueGreen`); they reach them through the
:func:`get_state` dependency (``request.app.state.serving``). The admin router is
guarded by :func:`require_admin`; errors map to status codes in
:mod:`citeops.serving.http_errors`.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from citeops.serving.credentials import CredentialsUnavailable, Unauthorized
from citeops.serving.metrics import refresh_gauges
from citeops.serving.public import public_status, public_text
from citeops.serving.schemas import (
    AbStartRequest,
    AbStopRequest,
    BadInput,
    BatchRequest,
    BatchResponse,
    DeployRequest,
    FeedbackAccepted,
    FeedbackRequest,
    Prediction,
    PredictRequest,
    check_client_id,
    check_text,
)
from citeops.serving.state import ServingState
from citeops.tasks.logcontract import MAX_META_CHARS

STUCK_BATCH_SECONDS = 60.0
MAX_URI_CHARS = 4096


def get_state(request: Request) -> ServingState:
    """The serving parts of the app that received ``request``."""
    return request.app.state.serving


State = Annotated[ServingState, Depends(get_state)]


def is_admin(request: Request, state: ServingState) -> bool:
    """The request carries the admin bearer token (any header text, ASCII or not)."""
    expected = state.admin_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if expected is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


def require_admin(request: Request, state: State) -> None:
    """403 while no admin token is configured, 401 without the right one."""
    if state.admin_token is None:
        raise HTTPException(
            403,
            "admin routes are disabled: no admin token is configured "
            "(set CITEOPS_ADMIN_TOKEN and restart)",
        )
    if not is_admin(request, state):
        raise HTTPException(
            401,
            "missing or wrong admin token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def client_of_request(request: Request, state: ServingState) -> str | None:
    """Who asks a prediction, for the sticky A/B arm and the query log: the client of a
    valid feedback credential (``Authorization``), else the ``X-Client-Id`` header, else
    None. A credential that is not valid is not an error here (predictions are open).

    Raises:
        BadInput: the ``X-Client-Id`` header is too long or not storable.
    """
    authorization = request.headers.get("authorization")
    if authorization:
        try:
            client = state.feedback.client_of(authorization)
        except (Unauthorized, CredentialsUnavailable):
            client = None
        if client:
            return client
    return check_client_id("X-Client-Id", request.headers.get("x-client-id"))


predict_router = APIRouter(tags=["predict"])
feedback_router = APIRouter(tags=["feedback"])
status_router = APIRouter(tags=["status"])
admin_router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@predict_router.post("/predict", response_model=Prediction)
async def predict(body: PredictRequest, request: Request, state: State) -> Response:
    """Label one (claim, evidence) pair. The answer names the model version and the arm
    (``champion``, or ``challenger`` during an A/B experiment) that gave it; a client
    that names itself (``X-Client-Id``) stays on one arm for the whole experiment."""
    client_id = client_of_request(request, state)
    (result,) = await state.predictions.score([(body.claim, body.evidence)], client_id=client_id)
    return JSONResponse(result)


@predict_router.post("/predict/batch", response_model=BatchResponse)
async def predict_batch(body: BatchRequest, request: Request, state: State) -> Response:
    """Label up to ``serve.max_batch_request`` pairs in one call (all on one arm)."""
    client_id = client_of_request(request, state)
    limit = state.settings.serve.max_batch_request
    if not body.pairs:
        raise BadInput("pairs", "must hold at least one pair")
    if len(body.pairs) > limit:
        raise BadInput("pairs", f"holds {len(body.pairs)} pairs; at most {limit} are accepted")
    pairs = [(p.claim, p.evidence) for p in body.pairs]
    if len(pairs) == 1:  # score() names a lone pair's fields without the prefix
        check_text("pairs[0].claim", pairs[0][0], state.predictions.limits.claim)
        evidence = body.pairs[0].evidence_text
        check_text("pairs[0].evidence", evidence, state.predictions.limits.evidence)
    answers = await state.predictions.score(pairs, client_id=client_id)
    return JSONResponse({"predictions": answers})


@feedback_router.post("/feedback", status_code=202, response_model=FeedbackAccepted)
async def feedback(body: FeedbackRequest, request: Request, state: State) -> Response:
    """Store the label a user believes is right (AI4citations fields). The 202 comes
    after the line is in its log part file, so a process crash cannot lose it.

    Needs ``Authorization: Bearer <API key or app token>`` where
    ``feedback.require_credentials`` is on (401 without, 429 over the client's rate);
    the client id is written with the line."""
    client_id = state.feedback.client_of(request.headers.get("authorization"))
    address = request.client.host if request.client else "unknown"
    record = await state.feedback.accept(
        body, client_id, rate_key=client_id or f"address {address}", source="api"
    )
    return JSONResponse(
        {"id": record["feedback_id"], "request_id": body.request_id}, status_code=202
    )


@status_router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _not_ready_because(state: ServingState) -> str | None:
    """Why the endpoint cannot answer now (None: it can)."""
    model = state.bluegreen.live[1]
    if model is None:
        return state.bluegreen.load_error or "the live model is still loading"
    if not state.batcher.running:
        return "the batcher is not running"
    busy_since = state.batcher.busy_since
    if busy_since and time.monotonic() - busy_since > STUCK_BATCH_SECONDS:
        return f"a batch has been running for over {STUCK_BATCH_SECONDS:.0f} s"
    return None


@status_router.get("/ready")
async def ready(request: Request, state: State) -> Response:
    """The live slot holds a model and the batcher is answering."""
    problem = _not_ready_because(state)
    if problem:
        detail = problem if is_admin(request, state) else public_text(problem)
        return JSONResponse({"ready": False, "detail": detail}, status_code=503)
    slot, model = state.bluegreen.live
    return JSONResponse({"ready": True, "slot": slot, "model_version": model.model_version})  # type: ignore[union-attr]


@status_router.get("/version")
async def version(request: Request, state: State) -> dict[str, Any]:
    """Live and idle slots (model version and URI) and when the last swap happened.
    Without the admin token, model URIs that are not registry URIs and the load error
    are shown without filesystem paths (:mod:`citeops.serving.public`)."""
    status = {**state.bluegreen.slots.describe(), "load_error": state.bluegreen.load_error}
    return status if is_admin(request, state) else public_status(status)


@status_router.get("/metrics")
async def metrics(state: State) -> Response:
    """Prometheus text format."""
    refresh_gauges(state.metrics, state.bluegreen.slots, state.writer.stats, state.batcher.depth)
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)


@admin_router.post("/deploy")
async def deploy(body: DeployRequest, state: State) -> dict[str, Any]:
    """Load a model into the idle slot, smoke-check it, then make it live."""
    check_text("model_uri", body.model_uri, MAX_URI_CHARS)
    return (await state.bluegreen.deploy(body.model_uri)).as_dict()


@admin_router.post("/rollback")
async def rollback(state: State) -> dict[str, Any]:
    """Make the previous model (in the idle slot) live again."""
    return (await state.bluegreen.rollback()).as_dict()


@admin_router.post("/ab/start")
async def ab_start(body: AbStartRequest, state: State) -> dict[str, Any]:
    """Start an online phase: the challenger is loaded into the idle slot and checked as
    for a deploy; the live slot keeps serving as the champion. 409 while an experiment
    or a deploy runs."""
    check_text("model_uri", body.model_uri, MAX_URI_CHARS)
    if body.experiment_id is not None:
        check_text("experiment_id", body.experiment_id, MAX_META_CHARS)
    return await state.online.start(
        body.model_uri, body.share, body.mode, body.experiment_id, body.seed
    )


@admin_router.get("/ab")
async def ab_status(state: State) -> dict[str, Any]:
    """The running experiment (else the last one, ``active: false``) and its counts."""
    return state.online.status()


@admin_router.post("/ab/stop")
async def ab_stop(body: AbStopRequest, state: State) -> dict[str, Any]:
    """End the experiment: ``promote`` switches the challenger live (as a deploy does),
    ``abort`` leaves the champion live. 409 when none runs."""
    return await state.online.stop(body.action)


def include_routers(app: FastAPI) -> None:
    """Add the predict, feedback, status and admin routers to ``app``."""
    for router in (predict_router, feedback_router, status_router, admin_router):
        app.include_router(router)
