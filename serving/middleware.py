"""A plain ASGI middleware: request counts and latency by route, requests per client,
and the body size limit.

Bodies over ``max_body_bytes`` get 413 before the app sees them, whether or not the
client sent ``Content-Length``. Requests to the prediction and feedback routes are
counted per client, the client being named by the ``X-Client-Id`` header (bounded:
:class:`~citeops.serving.metrics.TopClients`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from citeops.serving.metrics import CLIENT_ROUTES

if TYPE_CHECKING:
    from citeops.serving.metrics import ServingMetrics

Scope = dict[str, Any]
Message = dict[str, Any]


class MetricsAndLimits:
    def __init__(self, app: Any, metrics: ServingMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.metrics.route_label(scope["path"])
        start = time.perf_counter()
        status = {"code": 500}

        async def send_tracking(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_limited(scope, receive)
                if body is None:
                    status["code"] = 413
                    await _send_json(
                        send,
                        413,
                        {
                            "detail": f"body: larger than serve.max_body_bytes "
                            f"({self.max_body_bytes} bytes)",
                            "field": "body",
                        },
                    )
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_tracking)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if route in CLIENT_ROUTES and self.metrics.usage is not None:
                self.metrics.usage.record_client(_header(scope, b"x-client-id"))

    async def _read_limited(self, scope: Scope, receive: Any) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), decoded leniently."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
