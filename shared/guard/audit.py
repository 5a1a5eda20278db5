"""The audit log: who did which admin action, when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, execute, fetch_all
from shared.guard.auth import Principal


def record(conn: psycopg.Connection[Row], principal: Principal, action: str, target: str | None = None,
           details: dict[str, Any] | None = None) -> None:
    execute(conn, """INSERT INTO audit_log (workspace_id, actor, action, target, details)
                     VALUES (%s, %s, %s, %s, %s)""",
            (principal.workspace_id, principal.actor or principal.scope, action, target, Jsonb(details or {})))


def list_entries(conn: psycopg.Connection[Row], workspace_id: str, *, action: str | None, since: datetime | None,
                 before_id: int | None, limit: int) -> list[Row]:
    """Newest first, `limit` rows. `action`: exact, or a prefix ending in "*"; `since`: UTC when it has no zone;
    `before_id`: keyset pagination on the primary key (ids grow with time)."""
    where, params = ["workspace_id = %s"], list[Any]([workspace_id])
    if action:
        if action.endswith("*"):
            where.append("starts_with(action, %s)")
            params.append(action[:-1])
        else:
            where.append("action = %s")
            params.append(action)
    if since is not None:
        where.append("created_at >= %s")
        params.append(since if since.tzinfo else since.replace(tzinfo=UTC))
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    return fetch_all(conn, f"""SELECT id, actor, action, target, details, created_at FROM audit_log
                               WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s""", (*params, limit))
