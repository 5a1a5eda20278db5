"""The `refresh_summaries` cron job: queue a summary for every recent conversation whose unsummarised
history has grown long, so the next turn finds it ready instead of paying for it on the request path."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.core.db import connect, fetch_all
from shared.core.jobs import JobPayload
from shared.core.queue import publish
from shared.dialog.conversations import HISTORY_LIMIT

ACTIVE_DAYS = 7       # older conversations are unlikely to continue
MAX_PER_RUN = 500     # one cron run stays short; the rest waits for the next run


class Payload(JobPayload):
    min_messages: int = Field(HISTORY_LIMIT, ge=1)


def run(payload: Payload) -> dict[str, Any]:
    threshold = payload.min_messages
    with connect() as conn:
        due = fetch_all(conn, """
            SELECT c.id, c.workspace_id, max(m.seq) AS last_seq
            FROM conversations c JOIN messages m ON m.conversation_id = c.id AND m.seq > c.summary_through
            WHERE c.updated_at > now() - make_interval(days => %s)
            GROUP BY c.id HAVING count(*) >= %s
            ORDER BY c.updated_at DESC LIMIT %s""", (ACTIVE_DAYS, threshold, MAX_PER_RUN))
    for row in due:
        # Keyed by the last message, so a conversation that hasn't moved is not summarised twice.
        publish("summarize_conversation", {"workspace_id": row["workspace_id"], "conversation_id": row["id"]},
                dedup_id=f"summarize-{row['id']}-{row['last_seq']}")
    return {"queued": len(due)}
