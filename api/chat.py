"""POST /api/chat: one chat turn, streamed as SSE (or one JSON answer), or as the AI SDK UI message stream.

Native body `{assistant_id, conversation_id?, message, user_id?, metadata?, stream?}`. A body with `id` and
`messages` is what the Vercel AI SDK's `useChat` sends: the assistant comes from `assistant_id` in the
body, `?assistant_id=` or the `x-assistant-id` header; `id` is the conversation id (a new id starts a
conversation under that id; an id of another workspace is 404), and the last user message is the turn.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from shared.core.errors import Unprocessable
from shared.core.http import create_app, json_error
from shared.core.request_body import check_messages, json_body, validate
from shared.dialog import chat
from shared.dialog.clock import Started
from shared.dialog.identity import visitor_for_request, visitor_headers, with_visitor_token
from shared.dialog.sse import (
    SSE_HEADERS,
    UI_STREAM_HEADERS,
    EventStreamResponse,
    native_events,
    relay,
    ui_message_stream,
)
from shared.dialog.warmup import at_instance_start
from shared.guard.auth import Principal
from shared.guard.deps import AnyKey

app = create_app("chat", description="Chat with an assistant: streamed, cited answers; native SSE or the AI SDK.",
                 on_start=at_instance_start)  # the first turn's one-time work, in the background from instance start
# CORS for browsers on customers' sites comes from create_app (shared.core.http.WidgetCorsMiddleware).

Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: Id
    conversation_id: Id | None = Field(default=None, description="Continue this conversation; omit to start one")
    message: str = Field(min_length=1)
    user_id: str | None = Field(default=None, max_length=200, description="Your id for the end user")
    user_hash: str | None = Field(default=None, max_length=128,
                                  description="Chat keys: hex HMAC-SHA256(identity secret, user_id) from your server")
    metadata: dict[str, Any] | None = Field(default=None, description="Merged into the conversation's metadata "
                                                                      "(at most 20 keys, 4 KB)")
    stream: bool = Field(default=True, description="false: one JSON answer instead of SSE")


class UIPart(BaseModel):
    model_config = ConfigDict(extra="allow")  # file, reasoning and tool parts carry more fields

    type: str
    text: str | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # metadata and whatever the app attaches

    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = Field(default_factory=list)


class UIChatRequest(BaseModel):
    """useChat's body; extra keys allowed because useChat merges the app's own `body` fields in."""

    model_config = ConfigDict(extra="allow")

    id: Id
    messages: list[UIMessage] = Field(min_length=1)
    trigger: str | None = None
    assistant_id: Id | None = None
    user_id: str | None = Field(default=None, max_length=200)
    user_hash: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] | None = None


@app.post("/api/chat", summary="One chat turn (SSE events, a JSON answer, or the AI SDK UI message stream)",
          response_model=None)
async def chat_turn(request: Request, started: Started, principal: AnyKey) -> Response:
    # No request-long database connection: the turn borrows pooled ones while it runs statements.
    body = await json_body(request)
    if isinstance(body, dict) and "messages" in body and "id" in body:
        ui = validate(UIChatRequest, body)
        check_messages(count=len(ui.messages))  # useChat resends the whole chat; we keep it server-side anyway
        assistant_id = ui.assistant_id or request.query_params.get("assistant_id") or request.headers.get(
            "x-assistant-id")
        if not assistant_id:
            raise Unprocessable("Name the assistant: `assistant_id` in the body, ?assistant_id= or x-assistant-id.",
                                code="assistant_id_required", details=[{"field": "assistant_id",
                                                                        "problem": "missing"}])
        turn = _turn_input(request, principal, started, assistant_id=assistant_id, message=_last_user_text(ui),
                           conversation_id=ui.id, user_id=ui.user_id, user_hash=ui.user_hash, metadata=ui.metadata)
        turn.create_if_missing = True
        prepared = await chat.prepare(turn)
        return EventStreamResponse(relay(chat.run(prepared), ui_message_stream),
                                   headers={**UI_STREAM_HEADERS, **_headers(prepared)})
    req = validate(ChatRequest, body)
    turn = _turn_input(request, principal, started, assistant_id=req.assistant_id, message=req.message,
                       conversation_id=req.conversation_id, user_id=req.user_id, user_hash=req.user_hash,
                       metadata=req.metadata)
    prepared = await chat.prepare(turn)
    if req.stream:
        return EventStreamResponse(relay(with_visitor_token(chat.run(prepared), turn.visitor), native_events),
                                   headers={**SSE_HEADERS, **_headers(prepared)})
    result = await chat.collect(with_visitor_token(chat.run(prepared), turn.visitor))
    if result["status"] == "failed":
        error = result["error"] or {"code": "failed", "message": "The turn failed."}
        return json_error(503, error["code"], error["message"], details={
            "conversation_id": result["conversation_id"], "user_message_id": result["user_message_id"],
            "message_id": result["message_id"]}, headers=_headers(prepared))
    return JSONResponse(result, headers=_headers(prepared))


def _headers(prepared: chat.Turn) -> dict[str, str]:
    return {"x-conversation-id": prepared.conversation_id, **visitor_headers(prepared.input.visitor)}


@app.get("/api/chat/{chat_id}/stream", status_code=204, summary="AI SDK stream resumption: nothing to resume")
def resume(chat_id: str, principal: AnyKey) -> Response:
    # useChat({resume: true}) asks after a reload; answers are not buffered for replay, so: 204, as the SDK expects.
    return Response(status_code=204)


def _turn_input(request: Request, principal: Principal, started: float, *, assistant_id: str, message: str,
                conversation_id: str | None, user_id: str | None, user_hash: str | None,
                metadata: dict[str, Any] | None) -> chat.TurnInput:
    check_messages(message)
    if not message.strip():
        raise Unprocessable("The message is empty.", code="empty_message",
                            details=[{"field": "message", "problem": "empty"}])
    # Chat keys: only a verified user id names the end user; otherwise the engine's visitor id does.
    visitor = visitor_for_request(request, principal, user_id=user_id, user_hash_given=user_hash)
    return chat.TurnInput(workspace_id=principal.workspace_id, assistant_id=assistant_id, message=message,
                          conversation_id=conversation_id, external_user_id=visitor.user_id if visitor else user_id,
                          metadata=metadata, api_key_id=principal.owner, owner_only=principal.scope == "chat",
                          principal=principal, client_ip=chat.client_ip(request), visitor=visitor,
                          origin=request.headers.get("origin"), host=request.headers.get("host"), started=started)


def _last_user_text(ui: UIChatRequest) -> str:
    for message in reversed(ui.messages):
        if message.role == "user":
            return "".join(part.text or "" for part in message.parts if part.type == "text")
    raise Unprocessable("The messages hold no user message.", code="no_user_message",
                        details=[{"field": "messages", "problem": "no message with role 'user'"}])


lambda_handler = Mangum(app)
