"""/api/feedback: thumbs up or down and a comment on an assistant's reply; listed per assistant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request, Response
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field

from shared.db import Row, fetch_all, fetch_one
from shared.deps import AdminKey, AnyKey, Db
from shared.errors import NotFound, Unprocessable
from shared.http import create_app
from shared.identity import visitor_for_request
from shared.pagination import MAX_LIMIT, decode_cursor, page

app = create_app("feedback", description="What end users thought of the answers.")

RATINGS = {"up": 1, "down": -1, 1: 1, -1: -1}


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(min_length=1, max_length=100, description="An assistant message")
    rating: Literal["up", "down", 1, -1] = Field(description='"up" or "down" (1 or -1 work too)')
    comment: str | None = Field(default=None, max_length=4000, description="Left out: keep an earlier comment")


class FeedbackPublic(BaseModel):
    id: str
    message_id: str
    conversation_id: str
    assistant_id: str
    rating: Literal["up", "down"]
    comment: str | None
    answer: str = Field(description="The assistant message the feedback is about")
    created_at: datetime


class FeedbackList(BaseModel):
    data: list[FeedbackPublic]
    count: int
    next_cursor: str | None


SELECT_FEEDBACK = """
    SELECT f.id, f.message_id, m.conversation_id, f.assistant_id, f.rating, f.comment, m.content AS answer,
           f.created_at
    FROM feedback f JOIN messages m ON m.id = f.message_id"""


def public(row: Row) -> FeedbackPublic:
    return FeedbackPublic(**{**row, "rating": "up" if row["rating"] > 0 else "down"})


@app.post("/api/feedback", status_code=201, response_model=FeedbackPublic,
          summary="Rate a reply (one rating per message: sending again replaces it)")
def give(body: FeedbackCreate, request: Request, principal: AnyKey, conn: Db, response: Response) -> FeedbackPublic:
    # Chat keys may rate only replies in their own visitor's conversations, with their own assistants.
    owner = None if principal.is_admin else principal.owner
    visitor = None if principal.is_admin else visitor_for_request(request, principal)
    reachable = list(principal.assistant_ids) if principal.assistant_ids is not None else None
    message = fetch_one(conn, """
        SELECT m.id, m.role, c.assistant_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.id = %s AND m.workspace_id = %s
          AND (%s::text IS NULL OR (c.api_key_id = %s::text AND c.visitor_id IS NOT DISTINCT FROM %s::text))
          AND (%s::text[] IS NULL OR c.assistant_id = ANY(%s::text[]))""",
        (body.message_id, principal.workspace_id, owner, owner, visitor.id if visitor else None, reachable, reachable))
    if message is None:
        raise NotFound("No such message in this workspace.", code="message_not_found")
    if message["role"] != "assistant":
        raise Unprocessable("Feedback goes on the assistant's replies, not on other messages.",
                            details=[{"field": "message_id", "problem": "not an assistant message",
                                      "type": "value_error"}])
    row = fetch_one(conn, """
        INSERT INTO feedback (workspace_id, assistant_id, message_id, rating, comment)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (message_id) DO UPDATE SET rating = EXCLUDED.rating,
            comment = coalesce(EXCLUDED.comment, feedback.comment)
        RETURNING id, (xmax = 0) AS created""",
        (principal.workspace_id, message["assistant_id"], body.message_id, RATINGS[body.rating], body.comment))
    assert row is not None
    if not row["created"]:
        response.status_code = 200
    stored = fetch_one(conn, SELECT_FEEDBACK + " WHERE f.id = %s", (row["id"],))
    assert stored is not None
    return public(stored)


@app.get("/api/feedback", response_model=FeedbackList, summary="List feedback, newest first (admin keys)")
def list_feedback(principal: AdminKey, conn: Db,
                  assistant_id: Annotated[str | None, Query(max_length=100)] = None,
                  rating: Literal["up", "down"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
                  cursor: Annotated[str | None, Query(max_length=500)] = None) -> FeedbackList:
    where, params = ["f.workspace_id = %s"], list[Any]([principal.workspace_id])
    if assistant_id is not None:
        where.append("f.assistant_id = %s")
        params.append(assistant_id)
    if rating is not None:
        where.append("f.rating = %s")
        params.append(RATINGS[rating])
    if cursor:
        where.append("(f.created_at, f.id) < (%s::timestamptz, %s)")
        params += decode_cursor(cursor, "time", "text")
    rows = fetch_all(conn, f"{SELECT_FEEDBACK} WHERE {' AND '.join(where)} ORDER BY f.created_at DESC, f.id DESC "
                           "LIMIT %s", (*params, limit + 1))
    rows, next_cursor = page(rows, limit, "created_at", "id")
    return FeedbackList(data=[public(r) for r in rows], count=len(rows), next_cursor=next_cursor)


lambda_handler = Mangum(app)
