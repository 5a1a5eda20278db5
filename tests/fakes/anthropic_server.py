"""A stand-in for Anthropic's messages API: the streaming event protocol, scripted failures (529 & co).

Same script as the OpenAI stand-in (`fail`, `hang`, `break_after`, `spoil`, `not_a_stream`, `reply`,
`delay`, `requests`); `break_after(n)` and `spoil("error", n)` here send n text deltas and then a
mid-stream `overloaded_error` event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_server import SPOILS, Script, counted

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


class FakeAnthropic(Script):
    def __init__(self, api_key: str = "sk-ant-test") -> None:
        super().__init__()
        self.api_key = api_key
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        step, arg = self.next_step(request, body)
        # Older SDKs send x-api-key; this generation sends the key as a Bearer token.
        if self.api_key not in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:]):
            return error(401)
        if step == "status":
            status, message = arg if isinstance(arg, tuple) else (arg, None)
            key = request.headers.get("x-api-key") or request.headers.get("authorization", "")[7:]
            return error(status, message.replace("{key}", key) if message else None)
        if step == "html":
            return Response("<html><body>Welcome to nginx!</body></html>", media_type="text/html")
        if step == "hang":
            await asyncio.sleep(arg)
        text = self.text_for(body)
        usage_in = sum(len(json.dumps(m.get("content", ""))) // 4 for m in body.get("messages", []))
        if not body.get("stream"):
            return JSONResponse({"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
                                 "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                                 "stop_sequence": None,
                                 "usage": {"input_tokens": usage_in, "output_tokens": max(1, len(text) // 4)}})
        limit = arg if step in ("break", *SPOILS) else None
        return StreamingResponse(counted(self, self._stream(text, body["model"], usage_in, limit, step)),
                                 media_type="text/event-stream")

    async def _stream(self, text: str, model: str, usage_in: int, limit: int | None,
                      step: str = "ok") -> AsyncIterator[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        yield event("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": 1}}})
        yield event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
        yield event("ping", {"type": "ping"})
        for n, piece in enumerate(self.pieces(text)):
            if limit is not None and n >= limit:
                if step == "garbled":
                    yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n'
                elif step != "unterminated":
                    yield event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                     "message": "Overloaded"}})
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            yield event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": piece}})
        yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                         "stop_sequence": None},
                                      "usage": {"output_tokens": max(1, len(text) // 4)}})
        yield event("message_stop", {"type": "message_stop"})


def error(status: int, message: str | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "api_error")
    message = message or f"Scripted {kind} ({status})."
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)
