"""A request id for every request: in each log line made while serving it, on its Sentry events, and returned as
`X-Request-Id` on the response, so a user's report ("it failed, id abc...") finds its log lines.

The caller's own id is kept when it is well-formed: `X-Request-Id` (a proxy or client that sets one), else
Vercel's `x-vercel-id` (which `vercel logs` shows); otherwise a new one. Anything else (too long, spaces,
quotes, control characters) is ignored rather than echoed into logs and headers.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.core.logs import request_id

HEADER = b"x-request-id"
INCOMING = (b"x-request-id", b"x-vercel-id")  # first well-formed one wins
WELL_FORMED = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")  # uuids, Vercel's fra1::iad1::abc-123-def


def pick_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's id when one of INCOMING is well-formed, else a new random one (32 hex characters)."""
    given = dict(headers)
    for name in INCOMING:
        value = given.get(name, b"").strip()
        if WELL_FORMED.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Outermost: sets the id for everything inside (logs, Sentry) and adds X-Request-Id to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Already inside a request (the local router in front of a function): the same id, not a second one.
        rid = request_id.get() or pick_request_id(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = rid
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message["headers"] = [*headers, header]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
