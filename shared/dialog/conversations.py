"""Conversations and messages on the chat path: start a turn, finish it.

A chat turn costs two statements here and no Redis call: `start_turn` (find or create the conversation,
store the user message and read the recent history, all in one statement, before any model is called) and
`finish_turn` (store the reply). Postgres is the only copy of the history.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any, Literal, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, fetch_one
from shared.core.errors import NotFound, PayloadTooLarge, Unprocessable

HISTORY_LIMIT = 20       # messages start_turn returns by default
Status = Literal["streaming", "complete", "partial", "failed"]


class TurnStart(NamedTuple):
    conversation_id: str
    user_message_id: str
    history: list[dict[str, str]]   # earlier messages after the summary, oldest first: {"role", "content"}
    summary: str | None             # the summary of everything older (None until the summary job wrote one)


# Messages a model may see again: no failed or empty replies, redacted text where PII was removed.
HISTORY_ROWS = """
    SELECT m.role, coalesce(m.redacted_content, m.content) AS content, m.seq FROM messages m
    WHERE m.conversation_id = {conversation} AND m.role IN ('user', 'assistant')
      AND m.status <> 'failed' AND m.content <> '' {after}
    ORDER BY m.seq DESC LIMIT {limit}"""

# The conversations this caller may continue: its workspace and assistant, and for chat keys its key and visitor.
MAY_CONTINUE = """c.workspace_id = %(ws)s AND c.assistant_id = %(asst)s
      AND (NOT %(owner_only)s::boolean OR (c.api_key_id IS NOT DISTINCT FROM %(key)s::text
                                           AND c.visitor_id IS NOT DISTINCT FROM %(visitor)s::text))"""

START_TURN = """
WITH fits AS (
    -- Metadata merged turn after turn must stay within the bounds: otherwise nothing changes (422).
    SELECT NOT EXISTS (
        SELECT 1 FROM conversations c
        WHERE %(meta)s <> '{}'::jsonb AND c.id = %(cid)s AND """ + MAY_CONTINUE + """
          AND ((SELECT count(*) FROM jsonb_object_keys(c.metadata || %(meta)s)) > %(max_keys)s
               OR octet_length((c.metadata || %(meta)s)::text) > %(max_bytes)s)) AS ok
), ins AS (
    INSERT INTO conversations AS c (id, workspace_id, assistant_id, external_user_id, api_key_id, visitor_id,
                                    metadata, title)
    SELECT coalesce(%(cid)s::text, new_id('conv')), %(ws)s, %(asst)s, %(user)s, %(key)s, %(visitor)s, %(meta)s,
           %(title)s
    WHERE (%(cid)s::text IS NULL OR %(create)s::boolean) AND (SELECT ok FROM fits)
    ON CONFLICT (id) DO UPDATE SET updated_at = now(), metadata = c.metadata || EXCLUDED.metadata
        WHERE """ + MAY_CONTINUE + """
    RETURNING c.id, c.summary, c.summary_through
), upd AS (
    UPDATE conversations c SET updated_at = now(), metadata = c.metadata || %(meta)s
    WHERE %(cid)s::text IS NOT NULL AND NOT %(create)s::boolean AND (SELECT ok FROM fits)
      AND c.id = %(cid)s AND """ + MAY_CONTINUE + """
    RETURNING c.id, c.summary, c.summary_through
), conv AS (
    SELECT * FROM ins UNION ALL SELECT * FROM upd
), msg AS (
    INSERT INTO messages (workspace_id, conversation_id, role, content, redacted_content)
    SELECT %(ws)s, conv.id, 'user', %(content)s, %(redacted)s FROM conv
    RETURNING id
)
-- The history subquery sees the table as it was before this statement: without the new message.
SELECT fits.ok AS metadata_fits, conv.id AS conversation_id, conv.summary, msg.id AS message_id,
       (SELECT coalesce(json_agg(json_build_object('role', h.role, 'content', h.content) ORDER BY h.seq), '[]')
        FROM (""" + HISTORY_ROWS.format(conversation="conv.id", after="AND m.seq > conv.summary_through",
                                        limit="%(limit)s") + """) h) AS history
FROM fits LEFT JOIN (conv CROSS JOIN msg) ON true"""


def start_turn(conn: psycopg.Connection[Row], *, workspace_id: str, assistant_id: str,
               conversation_id: str | None, user_message: str, external_user_id: str | None = None,
               metadata: dict[str, Any] | None = None, api_key_id: str | None = None,
               owner_only: bool = False, create_if_missing: bool = False, visitor_id: str | None = None,
               redacted_message: str | None = None, history_limit: int = HISTORY_LIMIT) -> TurnStart:
    """Store the user's message and return what the prompt needs, in ONE statement.

    `conversation_id=None` starts a conversation (titled after the first message). An id of another
    workspace or assistant, or (with `owner_only`, for chat keys) one another key or another visitor
    (`visitor_id`) started, raises NotFound; so does an unknown id unless `create_if_missing` (the AI
    SDK names new chats itself). `metadata` (bounded: check_metadata) is merged into the conversation's.
    `redacted_message` is what models may see when PII was removed. The returned history excludes the
    new message and anything the summary covers.
    """
    check_metadata(metadata)
    row = fetch_one(conn, START_TURN, {
        "cid": conversation_id, "ws": workspace_id, "asst": assistant_id, "user": external_user_id,
        "key": api_key_id, "visitor": visitor_id, "meta": Jsonb(metadata or {}),
        "title": (redacted_message or user_message)[:80],
        "create": create_if_missing, "owner_only": owner_only, "content": user_message,
        "redacted": redacted_message, "limit": history_limit, "max_keys": MAX_METADATA_KEYS,
        "max_bytes": MAX_METADATA_BYTES})
    assert row is not None
    if not row["metadata_fits"]:
        raise Unprocessable(f"The conversation's metadata would grow past {MAX_METADATA_KEYS} keys or "
                            f"{MAX_METADATA_BYTES} bytes.", code="metadata_invalid",
                            details=[{"field": "metadata", "problem": "merged metadata too large",
                                      "max_keys": MAX_METADATA_KEYS, "max_bytes": MAX_METADATA_BYTES}])
    if row["conversation_id"] is None:
        raise NotFound("No such conversation for this assistant.", code="conversation_not_found")
    return TurnStart(row["conversation_id"], row["message_id"], row["history"], row["summary"])


# A conversation's metadata is kept forever and sent by public keys: keep it small.
MAX_METADATA_KEYS, MAX_METADATA_KEY_CHARS, MAX_METADATA_BYTES = 20, 64, 4096


def check_metadata(metadata: dict[str, Any] | None) -> None:
    """Refuse metadata past the bounds: 413 for its size, 422 for too many or too long keys."""
    if not metadata:
        return
    long_keys = [k for k in metadata if len(k) > MAX_METADATA_KEY_CHARS]
    if len(metadata) > MAX_METADATA_KEYS or long_keys:
        raise Unprocessable(f"metadata may have at most {MAX_METADATA_KEYS} keys of at most "
                            f"{MAX_METADATA_KEY_CHARS} characters.", code="metadata_invalid",
                            details=[{"field": "metadata", "problem": "too many or too long keys",
                                      "max_keys": MAX_METADATA_KEYS, "keys": len(metadata)}])
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise PayloadTooLarge(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}.",
                              code="metadata_too_large", details={"max_bytes": MAX_METADATA_BYTES, "bytes": size})


# Keyed by an id the caller chose before the first attempt: a retry after an ambiguous commit (the
# connection dropped before the answer arrived) finds the row it already wrote instead of adding another.
_INSERT_REPLY = """
WITH m AS (
    INSERT INTO messages (id, workspace_id, conversation_id, role, content, redacted_content, citations, model,
                          provider, failover, usage, timings, status, error)
    SELECT coalesce(%(id)s::text, new_id('msg')), c.workspace_id, c.id, %(role)s, %(content)s, %(redacted)s,
           %(citations)s, %(model)s, %(provider)s, %(failover)s, %(usage)s, %(timings)s, %(status)s, %(error)s
    FROM conversations c WHERE c.id = %(cid)s AND c.workspace_id = %(ws)s
    ON CONFLICT (id) DO NOTHING
    RETURNING id, conversation_id
), touched AS (
    UPDATE conversations c SET updated_at = now() FROM m WHERE c.id = m.conversation_id
)"""
_ALREADY_STORED = """
WHERE %(id)s::text IS NOT NULL AND id = %(id)s AND workspace_id = %(ws)s AND conversation_id = %(cid)s"""
FINISH_TURN = _INSERT_REPLY + """
SELECT id FROM m
UNION ALL
SELECT id FROM messages""" + _ALREADY_STORED
# The reply and its token usage in one statement: usage is added only when this call inserted the reply,
# so a retry after an ambiguous commit counts the tokens once, like the reply. `total` is today's total
# (NULL when nothing was added), for the budget's Redis copy.
FINISH_TURN_WITH_USAGE = _INSERT_REPLY + """, used AS (
    INSERT INTO usage_daily (workspace_id, day, tokens_in, tokens_out)
    SELECT %(ws)s, %(day)s, %(tokens_in)s, %(tokens_out)s FROM m WHERE %(tokens_in)s + %(tokens_out)s > 0
    ON CONFLICT (workspace_id, day) DO UPDATE
    SET tokens_in = usage_daily.tokens_in + EXCLUDED.tokens_in,
        tokens_out = usage_daily.tokens_out + EXCLUDED.tokens_out
    RETURNING tokens_in + tokens_out AS total
)
SELECT id, (SELECT total FROM used) AS total FROM m
UNION ALL
SELECT id, NULL FROM messages""" + _ALREADY_STORED


def new_message_id() -> str:
    """A message id made before the row exists (the same shape as the database's new_id('msg'))."""
    return f"msg_{uuid.uuid4().hex}"


def add_message(conn: psycopg.Connection[Row], *, workspace_id: str, conversation_id: str,
                role: Literal["user", "assistant", "system"], content: str,
                citations: list[dict[str, Any]] | None = None, model: str | None = None,
                provider: str | None = None, failover: list[dict[str, Any]] | None = None,
                usage: dict[str, Any] | None = None, timings: dict[str, Any] | None = None,
                status: Status = "complete", error: str | None = None,
                redacted_content: str | None = None, message_id: str | None = None) -> str:
    """Append one message to a conversation of this workspace (NotFound otherwise); returns its id.

    With `message_id`, storing the same message again returns the id of the row already stored.
    """
    row = fetch_one(conn, FINISH_TURN, {
        "id": message_id, "ws": workspace_id, "cid": conversation_id, "role": role, "content": content,
        "redacted": redacted_content, "citations": Jsonb(citations or []), "model": model,
        "provider": provider, "failover": Jsonb(failover) if failover is not None else None,
        "usage": Jsonb(usage or {}), "timings": Jsonb(timings or {}), "status": status, "error": error})
    if row is None:
        raise NotFound("No such conversation in this workspace.", code="conversation_not_found")
    return str(row["id"])


def finish_turn_with_usage(conn: psycopg.Connection[Row], *, workspace_id: str, conversation_id: str,
                           message_id: str, usage: dict[str, Any], day: date, **fields: Any) -> tuple[str, int | None]:
    """finish_turn and the turn's tokens added to usage_daily in ONE statement (the chat turn's store).

    Returns (message id, today's token total, or None when this call added nothing: a retry, or no tokens).
    """
    tokens_in, tokens_out = max(0, int(usage.get("input_tokens") or 0)), max(0, int(usage.get("output_tokens") or 0))
    row = fetch_one(conn, FINISH_TURN_WITH_USAGE, {
        "id": message_id, "ws": workspace_id, "cid": conversation_id, "role": "assistant",
        "content": fields.get("content", ""), "redacted": fields.get("redacted_content"),
        "citations": Jsonb(fields.get("citations") or []), "model": fields.get("model"),
        "provider": fields.get("provider"),
        "failover": Jsonb(fields["failover"]) if fields.get("failover") is not None else None,
        "usage": Jsonb(usage or {}), "timings": Jsonb(fields.get("timings") or {}),
        "status": fields.get("status", "complete"), "error": fields.get("error"),
        "day": day, "tokens_in": tokens_in, "tokens_out": tokens_out})
    if row is None:
        raise NotFound("No such conversation in this workspace.", code="conversation_not_found")
    return str(row["id"]), None if row["total"] is None else int(row["total"])


def finish_turn(conn: psycopg.Connection[Row], *, workspace_id: str, conversation_id: str, content: str,
                citations: list[dict[str, Any]] | None = None, model: str | None = None,
                provider: str | None = None, failover: list[dict[str, Any]] | None = None,
                usage: dict[str, Any] | None = None, timings: dict[str, Any] | None = None,
                status: Status = "complete", error: str | None = None,
                redacted_content: str | None = None, message_id: str | None = None) -> str:
    """Store the assistant's reply (complete, partial when the client left, or failed); one statement.

    Idempotent with `message_id` (from new_message_id(), made once per turn): retrying after a dropped
    connection can't store the reply twice. Raises NotFound when the conversation was deleted while
    the reply streamed.
    """
    return add_message(conn, workspace_id=workspace_id, conversation_id=conversation_id, role="assistant",
                       content=content, citations=citations, model=model, provider=provider, failover=failover,
                       usage=usage, timings=timings, status=status, error=error, redacted_content=redacted_content,
                       message_id=message_id)


def delete_conversation(conn: psycopg.Connection[Row], workspace_id: str, conversation_id: str) -> None:
    """Delete it with its messages and their feedback (they cascade); NotFound for another workspace's id."""
    if fetch_one(conn, "DELETE FROM conversations WHERE id = %s AND workspace_id = %s RETURNING id",
                 (conversation_id, workspace_id)) is None:
        raise NotFound("No such conversation in this workspace.", code="conversation_not_found")
