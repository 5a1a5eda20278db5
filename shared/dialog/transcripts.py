"""Conversations as admins read them: filtered lists, a conversation with its messages, Markdown export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import NotFound
from shared.guard import pii

CONVERSATION_COLUMNS = """c.id, c.assistant_id, c.external_user_id, c.title, c.metadata, c.summary,
    c.created_at, c.updated_at,
    (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"""
MESSAGE_COLUMNS = """id, seq, role, content, redacted_content, citations, model, provider, failover, usage, timings,
    status, error, created_at"""


def list_conversations(conn: psycopg.Connection[Row], workspace_id: str, *, limit: int,
                       assistant_id: str | None = None, external_user_id: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       cursor: list[Any] | None = None, offset: int = 0) -> list[Row]:
    """Most recently active first; `since`/`until` bound the last activity. Fetches limit+1 rows."""
    where, params = ["c.workspace_id = %s"], list[Any]([workspace_id])
    for clause, value in (("c.assistant_id = %s", assistant_id), ("c.external_user_id = %s", external_user_id),
                          ("c.updated_at >= %s", since), ("c.updated_at < %s", until)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if cursor:
        where.append("(c.updated_at, c.id) < (%s::timestamptz, %s)")
        params += cursor
    return fetch_all(conn, f"""SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE {' AND '.join(where)}
                               ORDER BY c.updated_at DESC, c.id DESC LIMIT %s OFFSET %s""",
                     (*params, limit + 1, offset))


def get_conversation(conn: psycopg.Connection[Row], workspace_id: str, conversation_id: str,
                     api_key_id: str | None = None, visitor_id: str | None = None,
                     assistant_ids: tuple[str, ...] | None = None) -> Row:
    """One conversation of the workspace; with `api_key_id`, only if that key and visitor started it, with
    one of `assistant_ids` (else NotFound)."""
    row = fetch_one(conn, f"""SELECT {CONVERSATION_COLUMNS} FROM conversations c
                              WHERE c.id = %s AND c.workspace_id = %s
                                AND (%s::text IS NULL OR (c.api_key_id = %s::text
                                                          AND c.visitor_id IS NOT DISTINCT FROM %s::text))
                                AND (%s::text[] IS NULL OR c.assistant_id = ANY(%s::text[]))""",
                    (conversation_id, workspace_id, api_key_id, api_key_id, visitor_id,
                     list(assistant_ids) if assistant_ids is not None else None,
                     list(assistant_ids) if assistant_ids is not None else None))
    if row is None:
        raise NotFound("No such conversation in this workspace.", code="conversation_not_found")
    return row


def get_messages(conn: psycopg.Connection[Row], conversation_id: str, *, after_seq: int = 0,
                 limit: int | None = None, original: bool = False) -> list[Row]:
    """Messages in order (the caller has checked the conversation's workspace).

    Where PII was redacted, only `original` readers (admins) see what the user typed, and the placeholders
    in the reply that followed are put back; everyone else reads the redacted text.
    """
    rows = fetch_all(conn, f"""SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = %s AND seq > %s
                               ORDER BY seq LIMIT %s""", (conversation_id, after_seq, limit))
    mapping: dict[str, str] = {}
    for row in rows:
        redacted = row.pop("redacted_content")
        if row["role"] == "user":
            mapping = pii.redact(row["content"])[1] if redacted else {}
            if redacted and not original:
                row["content"] = redacted
        elif mapping and original:
            row["content"] = pii.restore(row["content"], mapping)
    return rows


def to_markdown(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """A readable transcript: one section per message, its sources as a numbered list of links."""
    title = conversation.get("title") or "Conversation"
    lines = [f"# {_one_line(title)}", "",
             f"- Conversation: `{conversation['id']}`",
             f"- Assistant: `{conversation['assistant_id']}`"]
    if conversation.get("external_user_id"):
        lines.append(f"- User: `{conversation['external_user_id']}`")
    lines += [f"- Started: {_when(conversation['created_at'])}", ""]
    for message in messages:
        heading = message["role"].capitalize()
        notes = [n for n in (message.get("model"), None if message["status"] == "complete" else message["status"]) if n]
        lines += [f"## {heading} · {_when(message['created_at'])}" + (f" ({', '.join(notes)})" if notes else ""), "",
                  message["content"] or "_(no text)_", ""]
        citations = message.get("citations") or []
        if citations:
            lines += ["Sources:", ""]
            for position, citation in enumerate(citations, 1):
                n = citation.get("index") or position  # the [n] the answer cites it by
                label = _one_line(str(citation.get("title") or citation.get("url") or citation.get("chunk_id") or n))
                url = citation.get("url")
                lines.append(f"{n}. [{label}]({url})" if url else f"{n}. {label}")
                if citation.get("quote"):
                    lines.append(f"   > {_one_line(str(citation['quote']))}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)
