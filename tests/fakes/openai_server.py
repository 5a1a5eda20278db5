"""A stand-in for OpenAI's chat completions (streaming wire protocol, usage chunk) and embeddings.

Each test scripts what the next requests get: `fail(status)` (an OpenAI error body; `message` may name
`{key}`, the key the request carried, as a provider echoing it would), `hang(seconds)` (no answer at all:
a timeout before the first token), `break_after(n)` (n chunks, then the connection drops), `spoil(kind, n)`
(n text chunks, then: "garbled" a line that is not JSON, "error" an error event, "unterminated" the body
ends without its end marker), `not_a_stream()` (200 with an HTML page). Otherwise it streams `reply`
(a string, or a function of the request body) in small pieces, `delay` seconds apart. `requests` records
every body it was sent. `faults` (a FaultPlan) makes every request fail at random instead, for the fault
suite. Embeddings: `embedding_status` (every request answers it) and `embedding_hang` (seconds before
answering); `embedding_attempts` counts every call.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Reply = str | Callable[[dict[str, Any]], str]
SPOILS = ("garbled", "error", "unterminated")


class FaultPlan:
    """Random failures with a seeded RNG: each request fails with probability `rate`, as one of `kinds`
    ("5xx", "529", "429", "drop": the stream breaks off after a few chunks)."""

    def __init__(self, seed: int, rate: float, kinds: tuple[str, ...] = ("5xx", "529", "429", "drop")) -> None:
        self.random = random.Random(seed)
        self.rate, self.kinds = rate, kinds
        self._lock = threading.Lock()

    def draw(self) -> tuple[str, Any]:
        with self._lock:
            if self.random.random() >= self.rate:
                return "ok", None
            kind = self.random.choice(self.kinds)
            if kind == "drop":
                return "break", self.random.randint(1, 4)
            return "status", {"5xx": self.random.choice([500, 502, 503]), "529": 529, "429": 429}[kind]


class Script:
    """The per-test behaviour both model stand-ins share."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reply: Reply = "Hello from the model."
        self.chunk_chars = 6
        self.delay = 0.0
        self._plan: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self.faults: FaultPlan | None = None
        self.open_streams = 0  # answers being streamed right now (a caller that hangs up ends its own)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            getattr(self, "embedding_requests", []).clear()
            self.headers.clear()
            self._plan.clear()
        self.reply, self.chunk_chars, self.delay = "Hello from the model.", 6, 0.0
        self.faults = None
        self.embedding_status: int | None = None
        self.embedding_hang = 0.0
        self.embedding_attempts = 0

    def fail(self, status: int, times: int = 1, message: str | None = None) -> None:
        self._plan += [("status", (status, message) if message else status)] * times

    def spoil(self, kind: str, after: int = 0) -> None:
        assert kind in ("garbled", "error", "unterminated"), kind
        self._plan.append((kind, after))

    def not_a_stream(self) -> None:
        self._plan.append(("html", None))

    def hang(self, seconds: float = 5.0, times: int = 1) -> None:
        self._plan += [("hang", seconds)] * times

    def break_after(self, chunks: int) -> None:
        self._plan.append(("break", chunks))

    def next_step(self, request: Request, body: dict[str, Any]) -> tuple[str, Any]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            if self._plan:
                return self._plan.pop(0)
        return self.faults.draw() if self.faults is not None else ("ok", None)

    def text_for(self, body: dict[str, Any]) -> str:
        return self.reply(body) if callable(self.reply) else self.reply

    def pieces(self, text: str) -> list[str]:
        return [text[i:i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)] or [""]


class FakeOpenAI(Script):
    def __init__(self, api_key: str = "sk-test-openai") -> None:
        super().__init__()
        self.api_key = api_key
        self.embedding_requests: list[list[str]] = []
        self.embedding_status: int | None = None
        self.embedding_hang = 0.0
        self.embedding_attempts = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"]),
                                     Route("/v1/embeddings", self.embeddings, methods=["POST"])])

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        step, arg = self.next_step(request, body)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if step == "status":
            status, message = arg if isinstance(arg, tuple) else (arg, f"Scripted failure {arg}.")
            message = message.replace("{key}", request.headers.get("authorization", "")[7:])
            return error(status, message, "server_error" if status >= 500 else "rate_limit_error")
        if step == "html":
            return Response("<html><body>Welcome to nginx!</body></html>", media_type="text/html")
        if step == "hang":
            await asyncio.sleep(arg)
        text = self.text_for(body)
        model = body.get("model", "gpt-test")
        usage = {"prompt_tokens": sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", [])),
                 "completion_tokens": max(1, len(text) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            return JSONResponse({"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                                 "model": model, "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        limit = arg if step in ("break", *SPOILS) else None
        return StreamingResponse(counted(self, self._stream(text, model, usage, include_usage, limit, step)),
                                 media_type="text/event-stream")

    async def _stream(self, text: str, model: str, usage: dict[str, int], include_usage: bool,
                      limit: int | None, step: str = "ok") -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        for n, piece in enumerate(self.pieces(text)):
            if limit is not None and n >= limit:
                if step == "garbled":
                    yield b'data: {"id": "chatcmpl-fake", "choices": [{"delta": {"content": "cut\n\n'
                elif step == "error":
                    failure = {"message": "The server had an error.", "type": "server_error", "code": None}
                    yield f"data: {json.dumps({'error': failure})}\n\n".encode()
                elif step == "unterminated":
                    return  # the body ends cleanly, without [DONE]
                else:
                    raise ConnectionResetError("scripted break")  # uvicorn drops the connection mid-body
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            yield chunk({"content": piece})
        yield chunk({}, "stop")
        if include_usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def embeddings(self, request: Request) -> Response:
        from tests.fakes.embeddings_server import embed

        body = await request.json()
        self.embedding_attempts += 1
        if self.embedding_hang:
            await asyncio.sleep(self.embedding_hang)
        if self.embedding_status is not None:
            return error(self.embedding_status, "The embeddings service had an error.", "server_error")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.embedding_requests.append(inputs)
        dims = body.get("dimensions") or 1536
        return JSONResponse({"object": "list", "model": body.get("model"),
                             "usage": {"prompt_tokens": 1, "total_tokens": 1},
                             "data": [{"object": "embedding", "index": i, "embedding": embed(t, dims)}
                                      for i, t in enumerate(inputs)]})


async def counted(script: Script, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`body`, counted in `script.open_streams` while it is being sent."""
    script.open_streams += 1
    try:
        async for part in body:
            yield part
    finally:
        script.open_streams -= 1


def error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status)
