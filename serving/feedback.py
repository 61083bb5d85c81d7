"""The one path a feedback item takes, whether it comes from ``POST /feedback`` or from
the app at ``/app``: who sent it, the client's rate limit, validation and provenance
(:meth:`~citeops.serving.predictions.PredictionService.feedback_record`), then the durable
log line, acknowledged only once it is in its part file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from citeops.serving.credentials import FeedbackAuth, RateLimiter

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.serving.logwriter import LogWriter
    from citeops.serving.predictions import PredictionService
    from citeops.serving.schemas import FeedbackRequest


class FeedbackIntake:
    """Credential check, per-client rate limit, validation and the durable log line."""

    def __init__(
        self,
        auth: FeedbackAuth,
        limiter: RateLimiter,
        predictions: PredictionService,
        writer: LogWriter,
        write_timeout_seconds: float,
    ) -> None:
        self.auth = auth
        self.limiter = limiter
        self.predictions = predictions
        self.writer = writer
        self.write_timeout_seconds = write_timeout_seconds

    @classmethod
    def from_settings(
        cls, settings: Settings, predictions: PredictionService, writer: LogWriter
    ) -> FeedbackIntake:
        feedback = settings.feedback
        limiter = RateLimiter(
            feedback.rate_per_minute, feedback.rate_burst, feedback.rate_max_clients
        )
        timeout = settings.serve.feedback_write_timeout_seconds
        return cls(FeedbackAuth.from_settings(feedback), limiter, predictions, writer, timeout)

    def client_of(self, authorization: str | None) -> str | None:
        """The client id of an HTTP request's ``Authorization`` header (None: anonymous).

        Raises:
            CredentialsUnavailable, Unauthorized: see :meth:`FeedbackAuth.client_of`.
        """
        return self.auth.client_of(authorization)

    async def accept(
        self, body: FeedbackRequest, client_id: str | None, rate_key: str, source: str
    ) -> dict[str, Any]:
        """Spend one request of ``rate_key``'s budget, then validate ``body`` and write its
        line (with ``client_id`` and ``source``); returns the line once it is durable.

        Raises:
            RateLimited: ``rate_key`` sent too much feedback too fast (nothing written).
            BadInput: a text or label is unacceptable.
            LogWriteFailed: the line could not be stored (nothing acknowledged).
        """
        self.limiter.check(rate_key)
        record = self.predictions.feedback_record(body, client_id, source=source)
        record.setdefault("source", source)
        await self.writer.write_durable("feedback", record, self.write_timeout_seconds)
        return record
