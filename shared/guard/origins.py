"""Browser origins: the spelling we store (scheme://host[:port], lower case) and the one check that a browser's
Origin is allowed, used for chat keys (shared.guard.auth) and for assistants (the chat turn and the widget's /public).

An allow-list is a browser-embedding control, not authentication: a request without an Origin header (a
server, curl) passes, as does a page the engine serves itself when the caller names its Host."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from shared.core.errors import Forbidden


def normalize_origin(value: str) -> str:
    """scheme://host[:port] in lower case; ValueError for anything else (a path, a query, another scheme)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise ValueError("an origin is scheme://host[:port], e.g. https://example.com")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def origin_allowed(origin: str | None, allowed: Iterable[str], host: str | None = None) -> bool:
    """True when `allowed` is empty, no Origin was sent, the origin is the engine's own `host`, or it is listed
    (scheme and host compare case-insensitively, a trailing / is ignored)."""
    listed = {o.rstrip("/").lower() for o in allowed}
    if not origin or not listed:
        return True
    if host and urlsplit(origin).netloc == host:
        return True
    return origin.rstrip("/").lower() in listed


def require_origin(origin: str | None, allowed: Iterable[str], host: str | None = None, *,
                   what: str = "this assistant") -> None:
    """403 origin_not_allowed unless origin_allowed(...)."""
    if not origin_allowed(origin, allowed, host):
        raise Forbidden(f"Origin {origin} is not allowed for {what}.", code="origin_not_allowed")
