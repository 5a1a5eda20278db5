"""/api/feedback: thumbs up or down and a comment on an assistant's reply; listed per assistant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query, Request, Response
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field

from shared.core.db import Row
from shared.core.http import create_app
from shared.core.pagination import MAX_LIMIT, decode_cursor, page
from shared.dialog import feedback
from shared.dialog.identity import visitor_for_request
from shared.guard.deps import AdminKey, AnyKey, Db

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


def public(row: Row) -> FeedbackPublic:
    return FeedbackPublic(**{**row, "rating": "up" if row["rating"] > 0 else "down"})


@app.post("/api/feedback", status_code=201, response_model=FeedbackPublic,
          summary="Rate a reply (one rating per message: sending again replaces it)")
def give(body: FeedbackCreate, request: Request, principal: AnyKey, conn: Db, response: Response) -> FeedbackPublic:
    visitor = None if principal.is_admin else visitor_for_request(request, principal)
    stored, created = feedback.give(conn, principal, visitor.id if visitor else None, body.message_id,
                                    RATINGS[body.rating], body.comment)
    if not created:
        response.status_code = 200
    return public(stored)


@app.get("/api/feedback", response_model=FeedbackList, summary="List feedback, newest first (admin keys)")
def list_feedback(principal: AdminKey, conn: Db,
                  assistant_id: Annotated[str | None, Query(max_length=100)] = None,
                  rating: Literal["up", "down"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
                  cursor: Annotated[str | None, Query(max_length=500)] = None) -> FeedbackList:
    after = decode_cursor(cursor, "time", "text") if cursor else None
    rows = feedback.list_feedback(conn, principal.workspace_id, assistant_id=assistant_id,
                                  rating=RATINGS[rating] if rating else None, after=after, limit=limit + 1)
    rows, next_cursor = page(rows, limit, "created_at", "id")
    return FeedbackList(data=[public(r) for r in rows], count=len(rows), next_cursor=next_cursor)


lambda_handler = Mangum(app)
