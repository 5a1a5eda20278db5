"""/api/keys: create (the key is shown once), list and revoke the workspace's API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import AdminKey, Db, create_key
from shared.audit import record
from shared.db import fetch_all, fetch_one
from shared.errors import NotFound
from shared.http import create_app

app = create_app("keys", description="API keys of a workspace: admin keys and public chat (widget) keys.")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    scope: Literal["admin", "chat"] = "chat"
    allowed_origins: list[str] = Field(default_factory=list, max_length=50,
                                       description="Chat keys: browser origins allowed to use the key; empty = any")


class KeyPublic(BaseModel):
    id: str
    name: str
    prefix: str
    scope: str
    allowed_origins: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The full key. It is shown only this once; store it now.")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


COLUMNS = "id, name, prefix, scope, allowed_origins, created_at, last_used_at, revoked_at"


@app.post("/api/keys", status_code=201, response_model=KeyCreated, summary="Create a key (shown once)")
def create(body: KeyCreate, principal: AdminKey, conn: Db) -> KeyCreated:
    key, row = create_key(conn, principal.workspace_id, body.scope, body.name, body.allowed_origins)
    record(conn, principal, "key.created", row["id"], {"scope": body.scope, "name": body.name})
    return KeyCreated(key=key, **row)


@app.get("/api/keys", response_model=KeysPublic, summary="List keys (never the keys themselves)")
def list_keys(principal: AdminKey, conn: Db) -> KeysPublic:
    rows = fetch_all(conn, f"SELECT {COLUMNS} FROM api_keys WHERE workspace_id = %s ORDER BY created_at",
                     (principal.workspace_id,))
    return KeysPublic(data=[KeyPublic(**r) for r in rows], count=len(rows))


@app.delete("/api/keys/{key_id}", response_model=KeyPublic, summary="Revoke a key; it stops working at once")
def revoke(key_id: str, principal: AdminKey, conn: Db) -> KeyPublic:
    row = fetch_one(conn, f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                              WHERE id = %s AND workspace_id = %s RETURNING {COLUMNS}""",
                    (key_id, principal.workspace_id))
    if row is None:
        raise NotFound("No such key in this workspace.")
    record(conn, principal, "key.revoked", key_id)
    return KeyPublic(**row)


lambda_handler = Mangum(app)
