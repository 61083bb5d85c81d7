"""Who sent a ``/feedback`` request, and whether they may send another one now.

Two kinds of credential, both sent as ``Authorization: Bearer <credential>``:

- an **API key** (``feedback.api_keys``): a service or a trusted tester; the key names
  its client id;
- a **token signed by the app** (``feedback.token_secret``), for the app's users, made by
  :func:`sign_feedback_token`: ``v1.<client id>.<expiry, Unix seconds>.<signature>``,
  where the signature is HMAC-SHA256 of ``v1.<client id>.<expiry>`` under the shared
  secret (base64url, no padding). Tokens expire; one valid for longer than
  ``feedback.token_max_ttl_seconds`` is refused.

The client id of a valid credential is written with the feedback line; feedback without
one is anonymous (accepted only where ``feedback.require_credentials`` is off). The rate
limit is a token bucket per client id (per remote address for anonymous requests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citeops.configs.settings import FeedbackSettings

TOKEN_VERSION = "v1"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class Unauthorized(Exception):
    """The request's credential is missing, malformed, wrong or expired (HTTP 401)."""


class CredentialsUnavailable(Exception):
    """Credentials are required but none are configured on the endpoint (HTTP 403)."""


class RateLimited(Exception):
    """The client sent too much feedback too fast (HTTP 429 with ``Retry-After``)."""

    def __init__(self, client: str, retry_after: float) -> None:
        super().__init__(f"too many feedback requests from {client}; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_feedback_token(secret: str, client_id: str, expires_at: float) -> str:
    """A feedback token for ``client_id`` valid until ``expires_at`` (Unix seconds): what
    the app gives its users' sessions.

    Raises:
        ValueError: ``client_id`` is not 1-64 of ``A-Z a-z 0-9 _ -``.
    """
    if not _CLIENT_ID.match(client_id):
        raise ValueError("client id must be 1-64 letters, digits, _ or -")
    payload = f"{TOKEN_VERSION}.{client_id}.{int(expires_at)}"
    return f"{payload}.{_sign(secret.encode('utf-8'), payload)}"


def _digest(text: str) -> bytes:
    # headers arrive as latin-1 text: any character encodes, none raises
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass(frozen=True)
class FeedbackAuth:
    """Checks ``/feedback`` credentials against the configured keys and token secret."""

    required: bool
    keys: dict[bytes, str]  # sha256(key) -> client id
    secret: bytes | None
    max_ttl_seconds: float

    @classmethod
    def from_settings(cls, feedback: FeedbackSettings) -> FeedbackAuth:
        secret = feedback.token_secret.get_secret_value() if feedback.token_secret else None
        return cls(
            required=feedback.require_credentials,
            keys={_digest(key): client for key, client in feedback.client_keys().items()},
            secret=secret.encode("utf-8") if secret else None,
            max_ttl_seconds=feedback.token_max_ttl_seconds,
        )

    @property
    def configured(self) -> bool:
        """Some credential can be checked (API keys or a token secret are set)."""
        return bool(self.keys) or self.secret is not None

    def client_of(self, authorization: str | None, now: float | None = None) -> str | None:
        """The client id of the ``Authorization`` header's credential; ``None`` for an
        anonymous request where credentials are not required.

        Raises:
            CredentialsUnavailable: credentials are required and none are configured.
            Unauthorized: a credential is required and missing, or one was sent and is
                not valid (a wrong credential is never taken as anonymous).
        """
        if self.required and not self.configured:
            raise CredentialsUnavailable(
                "feedback is disabled: credentials are required and none are configured "
                "(set CITEOPS_FEEDBACK__API_KEYS or CITEOPS_FEEDBACK__TOKEN_SECRET and restart)"
            )
        if not authorization or not authorization.strip():
            if self.required:
                raise Unauthorized(
                    "feedback needs credentials: send Authorization: Bearer <API key or token>"
                )
            return None
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("send credentials as Authorization: Bearer <API key or token>")
        if credential.startswith(TOKEN_VERSION + ".") and self.secret is not None:
            return self._token_client(credential, time.time() if now is None else now)
        client = self.keys.get(_digest(credential))
        if client is None:
            raise Unauthorized("unknown API key or invalid token")
        return client

    def _token_client(self, token: str, now: float) -> str:
        parts = token.split(".")
        if len(parts) != 4 or not _CLIENT_ID.match(parts[1]) or not parts[2].isdigit():
            raise Unauthorized("malformed token: expected v1.<client>.<expiry>.<signature>")
        _, client, expiry, signature = parts
        expected = _sign(self.secret or b"", f"{TOKEN_VERSION}.{client}.{expiry}")
        if not hmac.compare_digest(signature.encode("utf-8"), expected.encode("ascii")):
            raise Unauthorized("invalid token signature")
        if int(expiry) <= now:
            raise Unauthorized("token expired: ask the app for a new one")
        if int(expiry) > now + self.max_ttl_seconds:
            raise Unauthorized("token valid for too long (feedback.token_max_ttl_seconds)")
        return client


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, then ``per_minute`` a minute.

    At most ``max_keys`` buckets are kept (least recently used dropped first), so memory
    stays bounded whatever the number of clients.
    """

    def __init__(self, per_minute: float, burst: int, max_keys: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one request of ``key``; returns 0.0, or the seconds until one is allowed
        (nothing spent then)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def check(self, key: str, now: float | None = None) -> None:
        """:meth:`take`, raising :class:`RateLimited` (whole seconds, at least 1)."""
        wait = self.take(key, now)
        if wait > 0:
            raise RateLimited(key, float(max(1, math.ceil(wait))))
