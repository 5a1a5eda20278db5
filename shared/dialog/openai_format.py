"""OpenAI's wire format for the OpenAI-compatible face (api/openai_compat.py): its error shape, usage and the
chat.completion.chunk stream built from a turn's events, so OpenAI clients raise and parse as they always do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.core.errors import AppError
from shared.core.http import HTTP_CODES
from shared.dialog.sse import data_line

ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
Event = tuple[str, Any]


def openai_error(status: int, message: str, code: str | None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    response = openai_error(exc.status, exc.message, exc.code)
    response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return openai_error(400, f"Invalid request: {param or 'body'}: {first.get('msg', 'invalid')}.", "invalid_request",
                        param)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return openai_error(exc.status_code, str(exc.detail), HTTP_CODES.get(exc.status_code, "http_error"))


def use_openai_errors(app: FastAPI) -> None:
    """Every error of `app` in OpenAI's shape {"error": {message, type, param, code}}."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def failed(error: dict[str, Any] | None, headers: dict[str, str]) -> Response:
    """A turn that failed before it answered: a 503 OpenAI clients understand (and may retry)."""
    error = error or {"code": "failed", "message": "The turn failed."}
    return openai_error(503, error["message"], error["code"], headers=headers)


def usage(tokens: dict[str, int]) -> dict[str, int]:
    prompt, completion = tokens.get("input_tokens", 0), tokens.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(completion_id: str, created: int, model: str, result: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion from a collected turn; extras: conversation_id, citations, stored."""
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result["content"], "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": usage(result["usage"]), "system_fingerprint": None,
        "conversation_id": result["conversation_id"], "citations": result["sources"],
        "stored": result["stored"]}  # false: the reply is not in the conversation (store_failed)


def chunk_stream(completion_id: str, created: int, model: str,
                 include_usage: bool) -> Callable[[AsyncIterator[Event]], AsyncIterator[bytes]]:
    """The encoder `shared.dialog.sse.relay` takes: a turn's events -> chat.completion.chunk SSE lines."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return data_line({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                               "logprobs": None}], **extra})

    async def encode(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
        sources: list[dict[str, Any]] = []
        conversation_id = None
        async for name, data in events:
            if name == "conversation":
                conversation_id = data["conversation_id"]
                yield chunk({"role": "assistant", "content": ""})
            elif name == "delta":
                yield chunk({"content": data["text"]})
            elif name == "error":
                # The answer broke off after it began: OpenAI's SDKs raise on an error event in a stream.
                yield data_line({"error": {"message": data["message"], "type": "server_error", "param": None,
                                           "code": data["code"]}})
            elif name == "sources":
                sources = data
            elif name == "done":
                yield chunk({}, "stop", citations=sources, conversation_id=conversation_id)
                if include_usage:
                    yield data_line({**base, "choices": [], "usage": usage(data["usage"])})
        yield b"data: [DONE]\n\n"

    return encode
