"""The serving app factory and its lifespan.

Build it with :func:`create_app`; nothing is loaded until the app starts (its lifespan):
then the log writer and the batcher start, and the live model loads in the background
(``/health`` answers at once, ``/ready`` once the live slot answers). The parts are
wired in :mod:`citeops.serving.state`, the routes are in :mod:`citeops.serving.routes`
(errors in :mod:`citeops.serving.http_errors`), slot switching in
:mod:`citeops.serving.bluegreen`, scoring and feedback records in
:mod:`citeops.serving.predictions`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from citeops.serving.bluegreen import Loader, serving_model, startup_uri
from citeops.serving.http_errors import add_error_handlers
from citeops.serving.middleware import MetricsAndLimits
from citeops.serving.routes import include_routers
from citeops.serving.state import build_state
from citeops.serving.ui.blocks import mount_app

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.serving.slots import LoadedModel
    from citeops.tasks.inference.predictor import ClaimVerifier

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    model_uri: str | None = None,
    *,
    loader: Loader | None = None,
    initial: ClaimVerifier | None = None,
    ui: bool = True,
) -> FastAPI:
    """The serving app for ``settings``.

    Args:
        model_uri: what to serve at start; default: the persisted live slot, else
            ``models:/<registered_model>@champion``.
        loader: loads a model URI into a verifier (default: :func:`load_verifier` with
            ``settings.serve.precision``); used for the start-up model and deploys.
        initial: an already loaded verifier for ``model_uri`` (the CLI loads it first so
            that a bad URI stops the command with one clear line).
        ui: mount the app (Gradio) at ``/app``; off, Gradio is never imported.
    """
    state = build_state(settings, loader)
    first: LoadedModel | None = None
    if initial is not None:
        load_uri, shown_uri = startup_uri(settings, model_uri)
        first = serving_model(settings, initial, shown_uri, load_uri)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.serve.threads:
            import torch

            torch.set_num_threads(settings.serve.threads)
        if state.admin_token is None:
            log.warning("admin routes are disabled: no admin token (set CITEOPS_ADMIN_TOKEN)")
        feedback = settings.feedback
        if feedback.require_credentials and not (feedback.api_keys or feedback.token_secret):
            log.warning(
                "/feedback refuses every request: credentials are required and none are "
                "configured (set CITEOPS_FEEDBACK__API_KEYS or CITEOPS_FEEDBACK__TOKEN_SECRET)"
            )
        state.writer.start()
        state.batcher.start()
        state.online.shadow.start()
        state.tasks.append(asyncio.create_task(state.bluegreen.load_initial(model_uri, first)))
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            await state.online.shadow.stop()  # before the batcher: it scores on its thread
            await state.batcher.stop()
            await asyncio.to_thread(state.writer.close)

    app = FastAPI(
        title="citeops claim verification",
        version="1",
        description="Claim + evidence -> SUPPORT / NEI / REFUTE, with blue-green model slots.",
        lifespan=lifespan,
    )
    app.state.serving = state
    app.add_middleware(
        MetricsAndLimits, metrics=state.metrics, max_body_bytes=settings.serve.max_body_bytes
    )
    add_error_handlers(app)
    include_routers(app)
    if ui:
        mount_app(app, state)
    return app
