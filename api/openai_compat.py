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
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from shared.core.errors import BadRequest, NotFound
from shared.core.http import create_app
from shared.core.request_body import check_messages
from shared.dialog import chat
from shared.dialog.clock import Started
from shared.dialog.identity import VISITOR_TOKEN_HEADER, visitor_for_request, visitor_headers
from shared.dialog.openai_format import chunk_stream, completion, failed, openai_error, use_openai_errors
from shared.dialog.sse import SSE_HEADERS, EventStreamResponse, relay
from shared.dialog.warmup import at_instance_start
from shared.guard.auth import Principal
from shared.guard.deps import AnyKey, Db
from shared.llm import close_quietly
from shared.workspace.assistants import reachable_assistants

app = create_app("OpenAI-compatible", description=(
    "Chat completions and models as the OpenAI API has them (base_url = <engine>/api/v1, api_key = a Dialog "
    "Engine key, model = an assistant id). Extras: send `conversation_id` (body) or `x-conversation-id` (header) "
    "to continue a stored conversation; answers carry `conversation_id` and `citations` "
    "([{index, title, url, chunk_id, quote, score}]) on the completion or on the stream's finishing chunk."),
    on_start=at_instance_start)  # the first turn's one-time work, in the background from instance start
app.add_middleware(CORSMiddleware, allow_origin_regex=".*", allow_methods=["GET", "POST", "OPTIONS"],
                   allow_headers=["authorization", "content-type", "x-api-key", "x-conversation-id", "x-user-id",
                                  "x-user-hash", VISITOR_TOKEN_HEADER],
                   expose_headers=["x-conversation-id", VISITOR_TOKEN_HEADER], max_age=600)

Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")]
use_openai_errors(app)  # OpenAI clients raise their usual exceptions


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
async def completions(body: CompletionRequest, request: Request, started: Started, principal: AnyKey) -> Response:
    last = body.messages[-1]
    if last.role != "user" or not last.text().strip():
        raise BadRequest("The last message must be a user message with text.", code="invalid_messages")
    check_messages(last.text(), len(body.messages), [m.text() for m in body.messages[:-1]], error=BadRequest)
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
        prepared = await chat.prepare(turn)
    except NotFound as exc:
        if exc.code == "assistant_not_found":
            return openai_error(404, f"The model '{body.model}' does not exist.", "model_not_found", "model")
        raise
    headers = {"x-conversation-id": prepared.conversation_id, **visitor_headers(visitor)}
    events = chat.run(prepared)
    completion_id, created = f"chatcmpl-{prepared.user_message_id}", int(time.time())
    if not body.stream:
        result = await chat.collect(events)
        if result["status"] == "failed":
            return failed(result["error"], headers)
        return JSONResponse(completion(completion_id, created, body.model, result), headers=headers)
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
        return failed(next((data for name, data in ahead if name == "error"), None), headers)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    chunks = chunk_stream(completion_id, created, body.model, include_usage)
    return EventStreamResponse(relay(_chain(ahead, events), chunks), headers={**SSE_HEADERS, **headers})


async def _chain(ahead: list[chat.Event], events: AsyncIterator[chat.Event]) -> AsyncIterator[chat.Event]:
    try:
        for event in ahead:
            yield event
        async for event in events:
            yield event
    finally:
        await close_quietly(events)


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
    rows = reachable_assistants(conn, principal, model_id)  # a chat key lists only the assistants it was made for
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
