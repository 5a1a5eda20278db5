"""/api/audit: the workspace's audit log (who did which admin action, when), newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from mangum import Mangum
from pydantic import BaseModel, Field

from shared.core.http import create_app
from shared.core.pagination import MAX_LIMIT, decode_cursor, page
from shared.guard.audit import list_entries
from shared.guard.deps import AdminKey, Db

app = create_app("audit", description="The audit log: key, template, source, conversation and backup changes.")


class AuditEntry(BaseModel):
    id: int
    actor: str = Field(description='"key:<id>" or "user:<email>"')
    action: str = Field(description='e.g. "key.created", "template.updated", "source.deleted"')
    target: str | None
    details: dict[str, Any]
    created_at: datetime


class AuditPage(BaseModel):
    data: list[AuditEntry]
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


@app.get("/api/audit", response_model=AuditPage, summary="List audit entries, newest first (admin keys)")
def list_audit(
        principal: AdminKey, conn: Db,
        action: Annotated[str | None, Query(max_length=100, description='Exact action, or a prefix ending in "*" '
                                                                         '("key.*")')] = None,
        since: Annotated[datetime | None, Query(description="At or after (ISO date or time; UTC if bare)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}")] = 50,
        cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")] = None,
) -> AuditPage:
    before_id = decode_cursor(cursor, "int")[0] if cursor else None
    rows = list_entries(conn, principal.workspace_id, action=action, since=since, before_id=before_id,
                        limit=limit + 1)
    rows, next_cursor = page(rows, limit, "id")
    return AuditPage(data=[AuditEntry(**r) for r in rows], count=len(rows), next_cursor=next_cursor)


lambda_handler = Mangum(app)
