"""/api/v1: the OpenAI-compatible face. POST /api/v1/chat/completions (model = assistant id) and GET /api/v1/models.

Any OpenAI client works with base_url=<engine>/api/v1 and one of our keys. The last message is the turn;
earlier user/assistant messages are its history unless the request continues a stored conversation
(`conversation_id` in the body, e.g. the SDK's `extra_body`, or an `x-conversation-id` header). The
template owns the system prompt, so system/developer messages are ignored. Extras on our answers:
`conversation_id`, and `citations` ([{index, title, url, chunk_id, quote, score}]) on the completion, or
on the stream's finishing chunk. Errors use OpenAI's shape {"error": {message, type, param, code}}.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from shared import chat
from shared.auth import Principal
from shared.db import fetch_all
from shared.deps import AnyKey, Db, Started
from shared.errors import AppError, BadRequest, NotFound
from shared.http import HTTP_CODES, create_app
from shared.identity import VISITOR_TOKEN_HEADER, visitor_for_request, visitor_headers
from shared.llm import close_quietly
from shared.settings import get_settings
from shared.sse import SSE_HEADERS, EventStreamResponse, data_line, relay

app = create_app("OpenAI-compatible", description=(
    "Chat completions and models as the OpenAI API has them (base_url = <engine>/api/v1, api_key = a Dialog "
    "Engine key, model = an assistant id). Extras: send `conversation_id` (body) or `x-conversation-id` (header) "
    "to continue a stored conversation; answers carry `conversation_id` and `citations` "
    "([{index, title, url, chunk_id, quote, score}]) on the completion or on the stream's finishing chunk."))
app.add_middleware(CORSMiddleware, allow_origin_regex=".*", allow_methods=["GET", "POST", "OPTIONS"],
                   allow_headers=["authorization", "content-type", "x-api-key", "x-conversation-id", "x-user-id",
                                  "x-user-hash", VISITOR_TOKEN_HEADER],
                   expose_headers=["x-conversation-id", VISITOR_TOKEN_HEADER], max_age=600)

Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")]
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error(status: int, message: str, code: str | None, param: str | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


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


# This face answers in OpenAI's error shape, so OpenAI clients raise their usual exceptions.
app.add_exception_handler(AppError, _app_error)
app.add_exception_handler(RequestValidationError, _validation_error)
app.add_exception_handler(StarletteHTTPException, _http_error)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, ... are accepted and ignored

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class CompletionRequest(BaseModel):
    # OpenAI clients send many optional parameters (top_p, seed, tools, ...); the template decides those.
    model_config = ConfigDict(extra="allow")

    model: Id = Field(description="The assistant id")
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1, description="One choice only")
    user: str | None = Field(default=None, max_length=200)
    user_hash: str | None = Field(default=None, max_length=128,
                                  description="Extra, chat keys: hex HMAC-SHA256(identity secret, user)")
    metadata: dict[str, Any] | None = None
    conversation_id: Id | None = Field(default=None, description="Extra: continue this stored conversation")


@app.post("/api/v1/chat/completions", summary="Chat completion (model = assistant id)", response_model=None)
async def completions(body: CompletionRequest, request: Request, started: Started, principal: AnyKey,
                      conn: Db) -> Response:
    last = body.messages[-1]
    if last.role != "user" or not last.text().strip():
        raise BadRequest("The last message must be a user message with text.", code="invalid_messages")
    settings = get_settings()
    limit = settings.max_message_chars
    if len(last.text()) > limit:
        raise BadRequest(f"The last message is longer than {limit} characters.", code="message_too_long")
    if len(body.messages) > settings.max_request_messages:
        raise BadRequest(f"A request may carry at most {settings.max_request_messages} messages.",
                         code="too_many_messages")
    if any(len(m.text()) > limit for m in body.messages[:-1]):
        raise BadRequest(f"An earlier message is longer than {limit} characters.", code="message_too_long")
    conversation_id = body.conversation_id or request.headers.get("x-conversation-id") or None
    history = None if conversation_id else [
        {"role": m.role, "content": m.text()} for m in body.messages[:-1] if m.role in ("user", "assistant")]
    visitor = visitor_for_request(request, principal, user_id=body.user, user_hash_given=body.user_hash)
    turn = chat.TurnInput(
        workspace_id=principal.workspace_id, assistant_id=body.model, message=last.text(),
        conversation_id=conversation_id, external_user_id=visitor.user_id if visitor else body.user,
        metadata=body.metadata, api_key_id=principal.owner, owner_only=principal.scope == "chat",
        principal=principal, client_ip=chat.client_ip(request), history=history, visitor=visitor,
        temperature=body.temperature, max_output_tokens=body.max_completion_tokens or body.max_tokens,
        origin=request.headers.get("origin"), host=request.headers.get("host"), started=started)
    try:
        prepared = await chat.prepare(conn, turn)
    except NotFound as exc:
        if exc.code == "assistant_not_found":
            return openai_error(404, f"The model '{body.model}' does not exist.", "model_not_found", "model")
        raise
    headers = {"x-conversation-id": prepared.conversation_id, **visitor_headers(visitor)}
    events = chat.run(conn, prepared)
    completion_id, created = f"chatcmpl-{prepared.user_message_id}", int(time.time())
    if not body.stream:
        result = await chat.collect(events)
        if result["status"] == "failed":
            return _failed(result["error"], headers)
        return JSONResponse({
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result["content"], "refusal": None},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(result["usage"]), "system_fingerprint": None,
            "conversation_id": result["conversation_id"], "citations": result["sources"],
            "stored": result["stored"]}, headers=headers)  # false: the reply is not in the conversation (store_failed)
    # Read ahead to the first text: a turn that fails before it answers a plain HTTP error, which
    # OpenAI clients understand (and may retry), instead of a 200 stream that carries only an error.
    ahead: list[chat.Event] = []
    async for event in events:
        ahead.append(event)
        if event[0] in ("delta", "done"):
            break
    done = next((data for name, data in ahead if name == "done"), None)
    if done is not None and done["status"] == "failed":
        await close_quietly(events)
        return _failed(next((data for name, data in ahead if name == "error"), None), headers)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    chunks = _chunks(completion_id, created, body.model, include_usage)
    return EventStreamResponse(relay(_chain(ahead, events), chunks), headers={**SSE_HEADERS, **headers})


def _failed(error: dict[str, Any] | None, headers: dict[str, str]) -> Response:
    error = error or {"code": "failed", "message": "The turn failed."}
    response = openai_error(503, error["message"], error["code"])
    response.headers.update(headers)
    return response


def _usage(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _chain(ahead: list[chat.Event], events: AsyncIterator[chat.Event]) -> AsyncIterator[chat.Event]:
    try:
        for event in ahead:
            yield event
        async for event in events:
            yield event
    finally:
        await close_quietly(events)


def _chunks(completion_id: str, created: int, model: str, include_usage: bool) -> Any:
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return data_line({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                               "logprobs": None}], **extra})

    async def encode(events: AsyncIterator[chat.Event]) -> AsyncIterator[bytes]:
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
                    yield data_line({**base, "choices": [], "usage": _usage(data["usage"])})
        yield b"data: [DONE]\n\n"

    return encode


class ModelPublic(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "dialog-engine"
    name: str = Field(description="Extra: the assistant's name")


class ModelsPublic(BaseModel):
    object: str = "list"
    data: list[ModelPublic]


def _models(conn: Any, principal: Principal, model_id: str | None = None) -> list[ModelPublic]:
    # A chat key lists only the assistants it was made for.
    reachable = list(principal.assistant_ids) if principal.assistant_ids is not None else None
    rows = fetch_all(conn, """SELECT id, name, created_at FROM assistants WHERE workspace_id = %s
                              AND (%s::text IS NULL OR id = %s) AND (%s::text[] IS NULL OR id = ANY(%s::text[]))
                              ORDER BY created_at, id""",
                     (principal.workspace_id, model_id, model_id, reachable, reachable))
    return [ModelPublic(id=r["id"], created=int(r["created_at"].timestamp()), name=r["name"]) for r in rows]


@app.get("/api/v1/models", response_model=ModelsPublic, summary="The workspace's assistants, as models")
def list_models(principal: AnyKey, conn: Db) -> ModelsPublic:
    return ModelsPublic(data=_models(conn, principal))


@app.get("/api/v1/models/{model_id}", response_model=ModelPublic, summary="One assistant, as a model")
def get_model(model_id: str, principal: AnyKey, conn: Db) -> Response | ModelPublic:
    found = _models(conn, principal, model_id)
    if not found:
        return openai_error(404, f"The model '{model_id}' does not exist.", "model_not_found", "model")
    return found[0]


lambda_handler = Mangum(app)
