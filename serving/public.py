"""What the unauthenticated status routes may show: no filesystem paths.

``/health``, ``/ready``, ``/version`` and ``/metrics`` answer anyone (load balancers and
Prometheus scrape them). Registry URIs (``models:/...``, ``runs:/...``) and model versions
are public; a model loaded from a folder, a ``file://`` or an ``s3://`` URI is shown as
``.../<last part>``, and paths in free text (a load error) as ``.../<last part>`` too.
The admin token (``Authorization: Bearer``) sees everything as it is.
"""

from __future__ import annotations

import re
from typing import Any

PUBLIC_SCHEMES = ("models:/", "runs:/")
HIDDEN = "..."
# an absolute POSIX path (two parts at least) or a file:// / s3:// URI, with its last part
_PATH = re.compile(r"(?:file|s3)://[^\s'\"]*|(?<![\w:/.])(?:/[^\s/'\"():,;]+){2,}/?")
_URI_KEYS = ("model_uri", "pinned_uri")


def public_model_uri(uri: str | None) -> str | None:
    """``uri`` if it is a registry URI, else ``.../<last part>`` (``None`` stays)."""
    if uri is None or uri.startswith(PUBLIC_SCHEMES):
        return uri
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    return f"{HIDDEN}/{last}" if last and last != uri else HIDDEN


def public_text(text: str | None) -> str | None:
    """``text`` with every absolute path or file / S3 URI cut to ``.../<last part>``."""
    if not text:
        return text
    return _PATH.sub(lambda match: public_model_uri(match.group(0)) or HIDDEN, text)


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """A copy of the ``/version`` body fit for anyone: URIs and the load error without
    paths; the keys are the same."""
    shown: dict[str, Any] = {}
    for key, value in status.items():
        if isinstance(value, dict):
            shown[key] = public_status(value)
        elif key in _URI_KEYS and isinstance(value, str):
            shown[key] = public_model_uri(value)
        elif isinstance(value, str) and key == "load_error":
            shown[key] = public_text(value)
        else:
            shown[key] = value
    return shown
