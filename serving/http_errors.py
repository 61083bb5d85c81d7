"""How the serving exceptions map to HTTP status codes and JSON bodies.

Every refusal is a JSON ``{"detail": "<field>: <why>", "field": ...}`` or
``{"detail": ...}`` with a 4xx or 503; an unexpected error is a 500 with its type.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from citeops.serving.credentials import CredentialsUnavailable, RateLimited, Unauthorized
from citeops.serving.logwriter import LogWriteFailed
from citeops.serving.predictions import Busy, NotReady
from citeops.serving.schemas import BadInput
from citeops.serving.slots import CandidateRejected, DeployConflict, SlotError

log = logging.getLogger("citeops.serving.routes")


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
