"""Feedback on answers: one rating (+1 or -1) and an optional comment per assistant message."""

from __future__ import annotations

from typing import Any

import psycopg

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import NotFound, Unprocessable
from shared.guard.auth import Principal

SELECT_FEEDBACK = """
    SELECT f.id, f.message_id, m.conversation_id, f.assistant_id, f.rating, f.comment, m.content AS answer,
           f.created_at
    FROM feedback f JOIN messages m ON m.id = f.message_id"""


def give(conn: psycopg.Connection[Row], principal: Principal, visitor_id: str | None, message_id: str, rating: int,
         comment: str | None) -> tuple[Row, bool]:
    """Rate an assistant message (again: the rating is replaced, a comment left out keeps the earlier one);
    returns the stored feedback and whether it is new. Chat keys reach only replies in their own visitor's
    conversations with their own assistants (anything else is the same 404)."""
    owner = None if principal.is_admin else principal.owner
    reachable = list(principal.assistant_ids) if principal.assistant_ids is not None else None
    message = fetch_one(conn, """
        SELECT m.id, m.role, c.assistant_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.id = %s AND m.workspace_id = %s
          AND (%s::text IS NULL OR (c.api_key_id = %s::text AND c.visitor_id IS NOT DISTINCT FROM %s::text))
          AND (%s::text[] IS NULL OR c.assistant_id = ANY(%s::text[]))""",
        (message_id, principal.workspace_id, owner, owner, visitor_id, reachable, reachable))
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
        (principal.workspace_id, message["assistant_id"], message_id, rating, comment))
    assert row is not None
    stored = fetch_one(conn, SELECT_FEEDBACK + " WHERE f.id = %s", (row["id"],))
    assert stored is not None
    return stored, bool(row["created"])


def list_feedback(conn: psycopg.Connection[Row], workspace_id: str, *, assistant_id: str | None, rating: int | None,
                  after: list[Any] | None, limit: int) -> list[Row]:
    """Newest first, `limit` rows; `after` = (created_at, id) of the last row seen."""
    where, params = ["f.workspace_id = %s"], list[Any]([workspace_id])
    if assistant_id is not None:
        where.append("f.assistant_id = %s")
        params.append(assistant_id)
    if rating is not None:
        where.append("f.rating = %s")
        params.append(rating)
    if after:
        where.append("(f.created_at, f.id) < (%s::timestamptz, %s)")
        params += after
    return fetch_all(conn, f"{SELECT_FEEDBACK} WHERE {' AND '.join(where)} ORDER BY f.created_at DESC, f.id DESC "
                           "LIMIT %s", (*params, limit))
