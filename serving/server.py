"""Starting the serving endpoint as a process: the OpenMP wait policy, the first model
load, then uvicorn. ``citeops serve`` calls :func:`run_server`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from citeops.serving.bluegreen import default_loader, startup_uri
from citeops.tasks.errors import CiteopsError
from citeops.tasks.inference.engines import resolve_device

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.inference.predictor import ClaimVerifier

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


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


def load_first_model(
    settings: Settings, model_uri: str | None, progress: Progress
) -> ClaimVerifier | None:
    """The model to serve at start, loaded before the server binds its port.

    Returns None when no URI was given and the default (persisted live slot, else the
    champion alias) cannot be loaded: the server then starts unready until a deploy.

    Raises:
        DeviceUnavailable: ``serve.device`` is cuda and no CUDA GPU is visible (whatever
            the URI: no model could load).
        CiteopsError: ``model_uri`` was given and cannot be loaded.
    """

    serve = settings.serve
    device = resolve_device(serve.device, serve.precision)
    load_uri, shown_uri = startup_uri(settings, model_uri)
    torch_on = f"PyTorch {serve.precision} on {device}"
    progress(f"loading {shown_uri} (runtime {serve.runtime}, {torch_on})")
    try:
        return default_loader(settings)(load_uri)
    except CiteopsError as error:
        if model_uri:  # a URI the user gave: stop with one line
            raise
        progress(f"warning: no model loaded ({error}); /ready answers 503 until POST /admin/deploy")
        return None


class _NoShutdownCancelTracebacks(logging.Filter):
    """Drop uvicorn's "Exception in ASGI application" traceback for each request it
    cancels at ``serve.shutdown_timeout_seconds``: its own one line ("Cancel N running
    task(s), timeout graceful shutdown exceeded") says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        import asyncio

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def run_server(settings: Settings, model_uri: str | None, progress: Progress) -> None:
    """Serve until interrupted: SIGINT / SIGTERM let in-flight requests finish for up to
    ``serve.shutdown_timeout_seconds``, cancel the rest, then publish the open log parts.

    Raises:
        CiteopsError: ``model_uri`` was given and cannot be loaded.
    """
    import uvicorn

    from citeops.serving.app import create_app

    apply_omp_wait_policy(settings)
    verifier = load_first_model(settings, model_uri, progress)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, model_uri, initial=verifier)
    if app.state.serving.admin_token is None:
        progress("admin routes are disabled: no admin token (set CITEOPS_ADMIN_TOKEN)")
    serve = settings.serve
    base = f"http://{serve.host}:{serve.port}"
    progress(f"serving on {base} (the app: {base}/app, API docs: {base}/docs)")
    logging.getLogger("uvicorn.error").addFilter(_NoShutdownCancelTracebacks())
    uvicorn.run(
        app,
        host=serve.host,
        port=serve.port,
        log_level="warning",
        lifespan="on",
        # slow or stuck clients cannot hold the shutdown (and the log parts it publishes)
        timeout_graceful_shutdown=serve.shutdown_timeout_seconds,
    )
