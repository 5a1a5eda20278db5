"""/api/keys: create (the key is shown once), list, change, revoke; chat keys' identity secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field

from shared.core.http import create_app
from shared.guard import api_keys
from shared.guard.api_keys import check_assistants, revoke_key, rotate_identity_secret, update_key
from shared.guard.audit import record
from shared.guard.auth import create_key
from shared.guard.deps import AdminKey, Db

app = create_app("keys", description="API keys of a workspace: admin keys and public chat (widget) keys.")

AssistantIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=100)]
Origins = Annotated[list[str], Field(max_length=50)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    scope: Literal["admin", "chat"] = "chat"
    allowed_origins: Origins = Field(default_factory=list,
                                     description="Chat keys: browser origins allowed to embed the key; empty = any. "
                                                 "A browser-embedding control, not authentication.")
    assistant_ids: AssistantIds = Field(default_factory=list,
                                        description="Chat keys (required): the assistants the key may reach")
    require_identity: bool = Field(default=False, description="Chat keys: refuse visitors without a valid user_hash")


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    allowed_origins: Origins | None = None
    assistant_ids: AssistantIds | None = None
    require_identity: bool | None = None


class KeyPublic(BaseModel):
    id: str
    name: str
    prefix: str
    scope: str
    allowed_origins: list[str]
    assistant_ids: list[str] = Field(description="Chat keys: the assistants the key reaches")
    require_identity: bool
    has_identity_secret: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The full key. It is shown only this once; store it now.")
    identity_secret: str | None = Field(description="Chat keys: signs user ids on your server (user_hash). Shown "
                                                    "only this once; keep it on your server, never in a page.")


class IdentitySecret(KeyPublic):
    identity_secret: str = Field(description="The new secret, shown only this once; the old one stops working")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


@app.post("/api/keys", status_code=201, response_model=KeyCreated, summary="Create a key (shown once)")
def create(body: KeyCreate, principal: AdminKey, conn: Db) -> KeyCreated:
    assistant_ids = check_assistants(conn, principal.workspace_id, body.scope, body.assistant_ids)
    key, row = create_key(conn, principal.workspace_id, body.scope, body.name, body.allowed_origins,
                          assistant_ids, body.require_identity)
    record(conn, principal, "key.created", row["id"], {"scope": body.scope, "name": body.name})
    return KeyCreated(key=key, **row)


@app.get("/api/keys", response_model=KeysPublic, summary="List keys (never the keys or secrets themselves)")
def list_keys(principal: AdminKey, conn: Db) -> KeysPublic:
    rows = api_keys.list_keys(conn, principal.workspace_id)
    return KeysPublic(data=[KeyPublic(**r) for r in rows], count=len(rows))


@app.patch("/api/keys/{key_id}", response_model=KeyPublic,
           summary="Change a key's name, origins, assistants or identity requirement")
def update(key_id: str, body: KeyUpdate, principal: AdminKey, conn: Db) -> KeyPublic:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    row = update_key(conn, principal.workspace_id, key_id, changes)
    record(conn, principal, "key.updated", key_id, {"fields": sorted(changes)})
    return KeyPublic(**row)


@app.post("/api/keys/{key_id}/identity-secret", response_model=IdentitySecret,
          summary="Create or rotate a chat key's identity secret (shown once)")
def rotate(key_id: str, principal: AdminKey, conn: Db) -> IdentitySecret:
    secret, row = rotate_identity_secret(conn, principal.workspace_id, key_id)
    record(conn, principal, "key.identity_secret_rotated", key_id)
    return IdentitySecret(identity_secret=secret, **row)


@app.delete("/api/keys/{key_id}", response_model=KeyPublic, summary="Revoke a key; it stops working at once")
def revoke(key_id: str, principal: AdminKey, conn: Db) -> KeyPublic:
    row = revoke_key(conn, principal.workspace_id, key_id)
    record(conn, principal, "key.revoked", key_id)
    return KeyPublic(**row)


lambda_handler = Mangum(app)
