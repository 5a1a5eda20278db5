"""/api/assistants: an assistant = a template (pinned version or the latest) + overrides + allowed origins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request
from mangum import Mangum
from psycopg import Connection
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.core.db import Row
from shared.core.http import create_app
from shared.core.pagination import MAX_LIMIT, decode_cursor, page
from shared.core.settings import get_settings
from shared.guard.audit import record
from shared.guard.auth import Principal
from shared.guard.deps import AdminKey, AnyKey, Db
from shared.guard.origins import normalize_origin, require_origin
from shared.guard.ratelimit import AssistantLimits
from shared.workspace import assistants
from shared.workspace.template_config import TemplateConfig

app = create_app("assistants", description="Assistants: a template with overrides, knowledge and widget origins.")


Origin = Annotated[str, Field(max_length=300), AfterValidator(normalize_origin)]
OVERRIDES_DOC = "Any TemplateConfig fields that replace the template's (nested `retrieval` merges key by key)"


class AssistantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    template_id: str | None = Field(default=None, max_length=100, description="Default: the built-in template")
    template_version: int | None = Field(default=None, ge=1, description="Pin a version; null = follow the latest")
    overrides: dict[str, Any] = Field(default_factory=dict, description=OVERRIDES_DOC)
    allowed_origins: list[Origin] = Field(default_factory=list, max_length=50,
                                          description="Browser origins the widget may run on; empty = any")
    limits: AssistantLimits = Field(default_factory=AssistantLimits,
                                    description="Rate limits and token budget; absent = the settings' defaults")


class AssistantUpdate(BaseModel):
    """Only the fields sent change; `overrides` replaces the stored overrides as a whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    template_id: str | None = Field(default=None, max_length=100)
    template_version: int | None = Field(default=None, ge=1, description="null = follow the latest")
    overrides: dict[str, Any] | None = Field(default=None, description=OVERRIDES_DOC)
    allowed_origins: list[Origin] | None = Field(default=None, max_length=50)
    limits: AssistantLimits | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> AssistantUpdate:
        nulls = [k for k in self.model_fields_set if k != "template_version" and getattr(self, k) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} may not be null")
        return self


class AssistantPublic(BaseModel):
    id: str
    name: str
    template_id: str
    template_version: int | None = Field(description="The pinned version; null = follows the latest")
    effective_template_version: int
    overrides: dict[str, Any]
    allowed_origins: list[str]
    limits: dict[str, Any]
    config: TemplateConfig = Field(description="The effective config: template version + overrides")
    greeting: str
    suggested_questions: list[str]
    created_at: datetime
    updated_at: datetime


class AssistantsPublic(BaseModel):
    data: list[AssistantPublic]
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class AssistantWidget(BaseModel):
    """What a widget needs before the first message; readable with any key of the workspace."""

    id: str
    name: str
    greeting: str
    suggested_questions: list[str]
    language: str


def public(row: Row) -> AssistantPublic:
    config = assistants.resolve(row).config
    return AssistantPublic(id=row["id"], name=row["name"], template_id=row["template_id"],
                           template_version=row["pinned_version"], effective_template_version=row["template_version"],
                           overrides=row["overrides"], allowed_origins=row["allowed_origins"], limits=row["limits"],
                           config=config, greeting=config.greeting, suggested_questions=config.suggested_questions,
                           created_at=row["created_at"], updated_at=row["updated_at"])


@app.post("/api/assistants", status_code=201, response_model=AssistantPublic, summary="Create an assistant")
def create(body: AssistantCreate, principal: AdminKey, conn: Db) -> AssistantPublic:
    fields = body.model_dump()
    fields["limits"] = body.limits.model_dump(exclude_none=True)
    fields["template_id"] = body.template_id or get_settings().default_template_id
    with conn.transaction():
        row = assistants.create_assistant(conn, principal.workspace_id, fields)
        record(conn, principal, "assistant.created", row["id"], {"name": body.name, "template_id": row["template_id"]})
    return public(row)


@app.get("/api/assistants", response_model=AssistantsPublic, summary="List assistants, newest first")
def list_assistants(principal: AdminKey, conn: Db, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
                    cursor: Annotated[str | None, Query(max_length=500)] = None) -> AssistantsPublic:
    after = decode_cursor(cursor, "time", "text") if cursor else None
    rows, next_cursor = page(assistants.list_assistants(conn, principal.workspace_id, limit, after), limit,
                             "created_at", "id")
    return AssistantsPublic(data=[public(r) for r in rows], count=len(rows), next_cursor=next_cursor)


@app.get("/api/assistants/{assistant_id}", response_model=AssistantPublic,
         summary="Read an assistant with its effective config")
def read(assistant_id: str, principal: AdminKey, conn: Db) -> AssistantPublic:
    return public(assistants.get_assistant_row(conn, principal.workspace_id, assistant_id))


@app.get("/api/assistants/{assistant_id}/public", response_model=AssistantWidget,
         summary="Name, greeting, suggested questions and language (any key)")
def read_public(assistant_id: str, principal: AnyKey, conn: Db, request: Request) -> AssistantWidget:
    principal.check_assistant(assistant_id)  # a chat key reaches only the assistants it was made for
    assistant = assistants.get_assistant(conn, principal.workspace_id, assistant_id)
    require_origin(request.headers.get("origin"), assistant.allowed_origins, request.headers.get("host"))
    config = assistant.config
    return AssistantWidget(id=assistant.id, name=assistant.name, greeting=config.greeting,
                           suggested_questions=config.suggested_questions, language=config.language)


@app.patch("/api/assistants/{assistant_id}", response_model=AssistantPublic, summary="Change some fields")
def update(assistant_id: str, body: AssistantUpdate, principal: AdminKey, conn: Db) -> AssistantPublic:
    changes = body.model_dump(exclude_unset=True)
    if body.limits is not None:
        changes["limits"] = body.limits.model_dump(exclude_none=True)
    return _update(assistant_id, changes, principal, conn)


@app.put("/api/assistants/{assistant_id}", response_model=AssistantPublic,
         summary="Replace every field (those left out take their defaults)")
def replace(assistant_id: str, body: AssistantCreate, principal: AdminKey, conn: Db) -> AssistantPublic:
    changes = body.model_dump()
    changes["limits"] = body.limits.model_dump(exclude_none=True) if body.limits else {}
    changes["template_id"] = body.template_id or get_settings().default_template_id
    return _update(assistant_id, changes, principal, conn)


def _update(assistant_id: str, changes: dict[str, Any], principal: Principal, conn: Connection[Row]) -> AssistantPublic:
    with conn.transaction():
        row = assistants.update_assistant(conn, principal.workspace_id, assistant_id, changes)
        record(conn, principal, "assistant.updated", assistant_id, {"fields": sorted(changes)})
    return public(row)


@app.delete("/api/assistants/{assistant_id}", status_code=204,
            summary="Delete an assistant with its knowledge and conversations")
def delete(assistant_id: str, principal: AdminKey, conn: Db) -> None:
    with conn.transaction():
        assistants.delete_assistant(conn, principal.workspace_id, assistant_id)
        record(conn, principal, "assistant.deleted", assistant_id)


lambda_handler = Mangum(app)
