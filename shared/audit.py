"""The audit log: who did which admin action, when."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.auth import Principal
from shared.db import Row


def record(conn: psycopg.Connection[Row], principal: Principal, action: str, target: str | None = None,
           details: dict[str, Any] | None = None) -> None:
    conn.execute("""INSERT INTO audit_log (workspace_id, actor, action, target, details)
                    VALUES (%s, %s, %s, %s, %s)""",
                 (principal.workspace_id, principal.actor or principal.scope, action, target, Jsonb(details or {})))
