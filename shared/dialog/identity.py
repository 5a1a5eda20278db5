"""Who the end user behind a chat key is: a verified user id, or an anonymous visitor id the engine issued.

A chat (widget) key is public: anyone can copy it from a page. So the ids the caller sends are not trusted:
- Identity verification: the customer's backend signs its user's id with the key's identity secret,
  `user_hash = hex(HMAC-SHA256(secret, user_id))`, and the page hands both to the widget. A correct hash
  makes the visitor `user:<user_id>` (per-user limits, conversation ownership and history follow it).
- Everyone else is an anonymous visitor `anon:<random>`: the engine issues a signed token for it
  (`x-visitor-token` response header, `visitor_token` on the conversation event) that the client sends
  back in the `x-visitor-token` header. A token the engine did not sign is ignored: a new one is issued.
Admin keys and console sessions are the customer's own backend: they have no visitor (`None`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from shared.core.errors import Forbidden, Unauthorized, Unprocessable
from shared.guard.auth import Principal

TOKEN_VERSION = "vt1"
MAX_USER_ID_CHARS = 200
VISITOR_TOKEN_HEADER = "x-visitor-token"


@dataclass(frozen=True)
class Visitor:
    """The end user a chat key speaks for."""

    id: str                      # "user:<id>" (verified) or "anon:<random>" (issued)
    verified: bool
    user_id: str | None = None   # the verified external user id
    issued_token: str | None = None  # a token minted on this request: hand it to the client

    @property
    def anonymous(self) -> bool:
        return not self.verified


def user_hash(secret: str, user_id: str) -> str:
    """What the customer's backend computes: hex HMAC-SHA256 of the user id with the key's identity secret."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def _sign(secret: str, key_id: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"{key_id}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_visitor_token(principal: Principal) -> tuple[str, str]:
    """A new anonymous visitor: (visitor id, token to give the client). 128 random bits, signed per key."""
    nonce = secrets.token_urlsafe(16)
    return f"anon:{nonce}", f"{TOKEN_VERSION}.{nonce}.{_sign(principal.visitor_secret, principal.key_id or '', nonce)}"


def visitor_from_token(principal: Principal, token: str | None) -> str | None:
    """The visitor id a token names, if this key's engine signed it; else None."""
    if not token or len(token) > 200:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or not parts[1]:
        return None
    expected = _sign(principal.visitor_secret, principal.key_id or "", parts[1])
    # Bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
    return f"anon:{parts[1]}" if hmac.compare_digest(expected.encode(), parts[2].encode()) else None


def resolve_visitor(principal: Principal, *, user_id: str | None, user_hash_given: str | None,
                    token: str | None) -> Visitor | None:
    """The caller's visitor (None for admin keys and sessions). Raises 401/403 on a bad or missing hash."""
    if principal.scope != "chat" or principal.key_id is None:
        return None
    if user_hash_given is not None:
        if not principal.identity_secret:
            raise Forbidden("This key has no identity secret: create one (POST /api/keys/{id}/identity-secret) "
                            "before sending user_hash.", code="identity_verification_not_enabled")
        if not user_id:
            raise Unauthorized("user_hash was sent without the user_id it signs.", code="user_id_required")
        if len(user_id) > MAX_USER_ID_CHARS:
            raise Unprocessable(f"user_id may be at most {MAX_USER_ID_CHARS} characters.", code="user_id_too_long",
                                details=[{"field": "user_id", "problem": "too long", "max_chars": MAX_USER_ID_CHARS}])
        expected = user_hash(principal.identity_secret, user_id).encode()
        if not hmac.compare_digest(expected, user_hash_given.strip().lower().encode()):
            raise Unauthorized("user_hash does not match user_id: compute hex HMAC-SHA256(identity secret, user_id) "
                               "on your server.", code="invalid_user_hash")
        return Visitor(id=f"user:{user_id}", verified=True, user_id=user_id)
    if principal.require_identity:
        raise Unauthorized("This key requires a verified user: send user_id with its user_hash.",
                           code="identity_required")
    known = visitor_from_token(principal, token)
    if known:
        return Visitor(id=known, verified=False)
    visitor_id, issued = issue_visitor_token(principal)
    return Visitor(id=visitor_id, verified=False, issued_token=issued)


def visitor_headers(visitor: Visitor | None) -> dict[str, str]:
    """Response headers that hand a newly issued visitor token to the client."""
    return {VISITOR_TOKEN_HEADER: visitor.issued_token} if visitor and visitor.issued_token else {}


async def with_visitor_token(events: AsyncIterator[tuple[str, Any]], visitor: Visitor | None
                             ) -> AsyncIterator[tuple[str, Any]]:
    """The turn's events, with the issued visitor token on the `conversation` event (for SSE clients)."""
    try:
        async for name, data in events:
            if name == "conversation" and visitor and visitor.issued_token:
                data = {**data, "visitor_token": visitor.issued_token}
            yield name, data
    finally:
        from shared.llm import close_quietly

        await close_quietly(events)


def client_ip(request: Any) -> str | None:
    """The caller's address for limits. Forwarded headers are anyone's to write, so they count only where
    the platform sets them (on Vercel, or with TRUST_FORWARDED_IP=true); otherwise the socket peer."""
    from shared.core.settings import get_settings

    settings = get_settings()
    trusted = settings.vercel if settings.trust_forwarded_ip is None else settings.trust_forwarded_ip
    if trusted:
        for header in ("x-vercel-forwarded-for", "x-real-ip", "x-forwarded-for"):
            value = request.headers.get(header, "").split(",")[0].strip()
            if value:
                return value[:64]
    return request.client.host if request.client else None


def visitor_for_request(request: Any, principal: Principal, *, user_id: str | None = None,
                        user_hash_given: str | None = None) -> Visitor | None:
    """resolve_visitor with what the request carries: the body's user_id/user_hash (chat routes) or the
    x-user-id / x-user-hash headers (any route), and the x-visitor-token header."""
    headers = request.headers
    if user_id is None and user_hash_given is None:
        user_id, user_hash_given = headers.get("x-user-id") or None, headers.get("x-user-hash") or None
    elif user_hash_given is None:
        user_hash_given = headers.get("x-user-hash") or None
    return resolve_visitor(principal, user_id=user_id, user_hash_given=user_hash_given,
                           token=headers.get(VISITOR_TOKEN_HEADER))
