"""Secrets out of URLs before they are shown or logged."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


# query parameters that carry secrets (libpq's password=, sslpassword=; tokens and keys)
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[\w.\-]*password|passwd|pwd|secret|[\w\-]*token|[\w\-]*key)=)[^&#\s]*",
    re.IGNORECASE,
)


def redact_url(url: str | None) -> str | None:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``, and
    ``...?password=secret`` -> ``...?password=***`` (also ``sslpassword``, ``*token``,
    ``*key``, ``secret``)."""
    if url is None:
        return None
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}***", masked)
