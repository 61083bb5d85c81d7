"""What the routes and the app share: the parts of one serving app, wired from settings.

One :class:`ServingState` per app (``app.state.serving``), built by :func:`build_state`
before anything starts; the routes reach it through the
:func:`~citeops.serving.routes.get_state` dependency.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from citeops.serving.batcher import MicroBatcher
from citeops.serving.bluegreen import BlueGreen, Loader, default_loader
from citeops.serving.feedback import FeedbackIntake
from citeops.serving.logwriter import LogWriter, build_log_writer
from citeops.serving.metrics import ServingMetrics, build_metrics
from citeops.serving.online import OnlinePhase
from citeops.serving.predictions import PredictionService
from citeops.serving.schemas import TextLimits
from citeops.serving.shadow import ShadowQueue
from citeops.serving.slots import STATE_FILE, Slots

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


@dataclass
class ServingState:
    """The parts of one serving app, and the admin token resolved once at start-up
    (``None``: admin routes are off)."""

    settings: Settings
    bluegreen: BlueGreen
    predictions: PredictionService
    batcher: MicroBatcher
    writer: LogWriter
    metrics: ServingMetrics
    feedback: FeedbackIntake
    admin_token: str | None
    online: OnlinePhase
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def build_state(settings: Settings, loader: Loader | None = None) -> ServingState:
    """The parts of one serving app, wired from ``settings``; nothing started yet. The
    admin token is read here, once (in the ``local`` profile that may create its file)."""
    serve = settings.serve
    metrics = build_metrics(top_clients=serve.metrics_top_clients)
    batcher = MicroBatcher(  # the defaults; each slot's model brings its runtime's budget
        serve.max_batch_size,
        serve.max_wait_ms,
        serve.queue_size,
        metrics,
        max_batch_tokens=serve.max_batch_tokens,
        background_nice=serve.shadow_nice,
    )
    writer = build_log_writer(settings)
    bluegreen = BlueGreen(
        settings,
        Slots(settings.state_dir / STATE_FILE),
        loader or default_loader(settings),
        batcher,
        metrics,
    )
    shadow = ShadowQueue(
        batcher, writer, on_outcome=metrics.count_shadow, batch_size=serve.shadow_batch_size
    )
    online = OnlinePhase(bluegreen, shadow)
    limits = TextLimits.from_settings(settings)
    predictions = PredictionService(bluegreen, batcher, writer, limits, online=online)
    feedback = FeedbackIntake.from_settings(settings, predictions, writer)
    return ServingState(
        settings,
        bluegreen,
        predictions,
        batcher,
        writer,
        metrics,
        feedback,
        admin_token=settings.admin_secret(),
        online=online,
    )
