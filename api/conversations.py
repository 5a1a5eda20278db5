"""/api/conversations: list, read with messages and citations, export (JSON or Markdown), delete."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from mangum import Mangum
from pydantic import BaseModel, Field

from shared import llm
from shared.core.db import Row
from shared.core.errors import Unprocessable
from shared.core.http import create_app
from shared.core.pagination import MAX_LIMIT, decode_cursor, page
from shared.dialog import transcripts
from shared.dialog.conversations import delete_conversation
from shared.dialog.identity import visitor_for_request
from shared.guard.audit import record
from shared.guard.auth import Principal
from shared.guard.deps import AdminKey, AnyKey, Db

app = create_app("conversations", description="Stored conversations: read, export and delete them.")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, at most {MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page")]


class MessagePublic(BaseModel):
    id: str
    role: str
    content: str
    citations: list[dict[str, Any]]
    model: str | None
    provider: str | None
    failover: list[dict[str, Any]] | dict[str, Any] | None
    usage: dict[str, Any]
    timings: dict[str, Any]
    status: str
    error: str | None
    created_at: datetime


class ConversationPublic(BaseModel):
    id: str
    assistant_id: str
    user_id: str | None = Field(description="The external user id the chat was started with")
    title: str | None
    metadata: dict[str, Any]
    summary: str | None
    message_count: int
    created_at: datetime
    updated_at: datetime


class ConversationWithMessages(ConversationPublic):
    messages: list[MessagePublic]


class ConversationsPublic(BaseModel):
    data: list[ConversationPublic]
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class MessagesPublic(BaseModel):
    data: list[MessagePublic]
    count: int
    next_cursor: str | None


def public(row: Row) -> ConversationPublic:
    return ConversationPublic(user_id=row["external_user_id"], **row)


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _get(conn: Db, request: Request, principal: Principal, conversation_id: str) -> Row:
    """Chat keys read only their own visitor's conversations with their assistants; admin keys read all."""
    if principal.is_admin:
        return transcripts.get_conversation(conn, principal.workspace_id, conversation_id)
    visitor = visitor_for_request(request, principal)
    return transcripts.get_conversation(conn, principal.workspace_id, conversation_id, principal.owner or "",
                                        visitor.id if visitor else None, principal.assistant_ids)


def _message(row: Row, principal: Principal) -> MessagePublic:
    """Admins see what failed in the providers' own words; public keys the coarse reasons the chat stream
    gives (provider error texts can name accounts, models and limits)."""
    if principal.is_admin:
        return MessagePublic(**row)
    error = row["error"].split(" [", 1)[0] if row["error"] else None  # "[...]" holds the provider's detail
    failover = row["failover"] if isinstance(row["failover"], list) else None
    return MessagePublic(**{**row, "error": error, "failover": llm.public_failover(failover) if failover else None})


def _full(conn: Db, request: Request, principal: Principal, conversation_id: str) -> ConversationWithMessages:
    row = _get(conn, request, principal, conversation_id)
    messages = [_message(m, principal)
                for m in transcripts.get_messages(conn, conversation_id, original=principal.is_admin)]
    return ConversationWithMessages(messages=messages, **public(row).model_dump())


@app.get("/api/conversations", response_model=ConversationsPublic,
         summary="List conversations, most recently active first (admin keys)")
def list_conversations(
        principal: AdminKey, conn: Db, limit: Limit = 20, cursor: Cursor = None,
        offset: Annotated[int, Query(ge=0, le=100_000, description="Alternative to cursor")] = 0,
        assistant_id: Annotated[str | None, Query(max_length=100)] = None,
        user_id: Annotated[str | None, Query(max_length=200, description="The external user id")] = None,
        since: Annotated[datetime | None, Query(description="Active at or after (ISO, UTC if bare)")] = None,
        until: Annotated[datetime | None, Query(description="Last active before")] = None) -> ConversationsPublic:
    if cursor and offset:
        raise Unprocessable("Use either cursor or offset, not both.",
                            details=[{"field": "offset", "problem": "not allowed with cursor", "type": "value_error"}])
    after = decode_cursor(cursor, "time", "text") if cursor else None
    rows = transcripts.list_conversations(
        conn, principal.workspace_id, limit=limit, assistant_id=assistant_id, external_user_id=user_id,
        since=_utc(since), until=_utc(until), cursor=after, offset=offset)
    rows, next_cursor = page(rows, limit, "updated_at", "id")
    return ConversationsPublic(data=[public(r) for r in rows], count=len(rows), next_cursor=next_cursor)


@app.get("/api/conversations/{conversation_id}", response_model=ConversationWithMessages,
         summary="Read a conversation with its messages (chat keys: only their visitor's)")
def read(conversation_id: str, request: Request, principal: AnyKey, conn: Db) -> ConversationWithMessages:
    return _full(conn, request, principal, conversation_id)


@app.get("/api/conversations/{conversation_id}/messages", response_model=MessagesPublic,
         summary="A conversation's messages in order, page by page")
def messages(conversation_id: str, request: Request, principal: AnyKey, conn: Db, limit: Limit = 100,
             cursor: Cursor = None) -> MessagesPublic:
    _get(conn, request, principal, conversation_id)
    after = decode_cursor(cursor, "int")[0] if cursor else 0
    rows, next_cursor = page(transcripts.get_messages(conn, conversation_id, after_seq=after, limit=limit + 1,
                                                          original=principal.is_admin),
                             limit, "seq")
    return MessagesPublic(data=[_message(r, principal) for r in rows], count=len(rows), next_cursor=next_cursor)


@app.get("/api/conversations/{conversation_id}/export", summary="Download as JSON or Markdown",
         responses={200: {"content": {"application/json": {}, "text/markdown": {}}}})
def export(conversation_id: str, request: Request, principal: AnyKey, conn: Db,
           format: Literal["json", "markdown"] = "json") -> Response:
    full = _full(conn, request, principal, conversation_id)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", full.id)  # client-chosen ids must not break the header
    if format == "markdown":
        body = transcripts.to_markdown(full.model_dump(), [m.model_dump() for m in full.messages])
        return Response(body, media_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.md"'})
    return JSONResponse(full.model_dump(mode="json"),
                        headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


@app.delete("/api/conversations/{conversation_id}", status_code=204,
            summary="Delete a conversation with its messages and feedback (admin keys)")
def delete(conversation_id: str, principal: AdminKey, conn: Db) -> None:
    with conn.transaction():
        delete_conversation(conn, principal.workspace_id, conversation_id)
        record(conn, principal, "conversation.deleted", conversation_id)


lambda_handler = Mangum(app)
