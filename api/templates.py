"""/api/templates: the built-in `default` and the workspace's templates; every change makes a new version (a draft
until published when the template is gated on an evaluation set: shared/evals/gates.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, Path
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field

from shared.core.db import Row
from shared.core.http import create_app
from shared.evals import gates
from shared.evals.models import GateIn, PublishIn, PublishOut
from shared.guard.audit import record
from shared.guard.deps import AdminKey, Db
from shared.workspace import templates
from shared.workspace.template_config import TemplateConfig

app = create_app("templates", description="Prompt, model, retrieval and answer settings, versioned.")


class TemplateCreate(TemplateConfig):
    """A name plus the TemplateConfig fields (any left out take their defaults)."""

    name: str = Field(min_length=1, max_length=200)


class TemplatePatch(BaseModel):
    """Any TemplateConfig fields to change (nested `retrieval` merges key by key), and/or a new name."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    name: str | None = Field(default=None, min_length=1, max_length=200)


class TemplatePublic(BaseModel):
    id: str
    name: str
    builtin: bool = Field(description="The built-in template: readable by every workspace, never changed")
    version: int = Field(description="The latest version, whose config is shown")
    published_version: int | None = Field(default=None, description="Gated: the version assistants follow")
    gate: dict[str, Any] | None = Field(default=None, description="{set_id, tolerances} when gated")
    config: TemplateConfig
    created_at: datetime
    updated_at: datetime


class TemplatesPublic(BaseModel):
    data: list[TemplatePublic]
    count: int


class VersionPublic(BaseModel):
    template_id: str
    version: int
    latest: bool
    published: bool = Field(description="The version assistants following the template use")
    config: TemplateConfig
    created_by: str | None
    created_at: datetime


class VersionsPublic(BaseModel):
    data: list[VersionPublic]
    count: int


def public(row: Row) -> TemplatePublic:
    return TemplatePublic(id=row["id"], name=row["name"], builtin=row["workspace_id"] is None,
                          version=row["latest_version"], published_version=row.get("published_version"),
                          gate=row.get("gate"), config=TemplateConfig.model_validate(row["config"]),
                          created_at=row["created_at"], updated_at=row["updated_at"])


def version_public(row: Row) -> VersionPublic:
    return VersionPublic(template_id=row["template_id"], version=row["version"],
                         latest=row["version"] == row["latest_version"],
                         published=row["version"] == (row.get("published_version") or row["latest_version"]),
                         config=TemplateConfig.model_validate(row["config"]),
                         created_by=row["created_by"], created_at=row["created_at"])


def _config_of(body: TemplateCreate) -> TemplateConfig:
    return TemplateConfig.model_validate(body.model_dump(exclude={"name"}))


@app.get("/api/templates", response_model=TemplatesPublic, summary="List the built-in and the workspace's templates")
def list_templates(principal: AdminKey, conn: Db) -> TemplatesPublic:
    rows = templates.list_templates(conn, principal.workspace_id)
    return TemplatesPublic(data=[public(r) for r in rows], count=len(rows))


@app.post("/api/templates", status_code=201, response_model=TemplatePublic, summary="Create a template (version 1)")
def create(body: TemplateCreate, principal: AdminKey, conn: Db) -> TemplatePublic:
    with conn.transaction():
        row = templates.create_template(conn, principal.workspace_id, body.name, _config_of(body), principal.actor)
        record(conn, principal, "template.created", row["id"], {"name": body.name})
    return public(row)


@app.get("/api/templates/{template_id}", response_model=TemplatePublic, summary="Read a template's latest version")
def read(template_id: str, principal: AdminKey, conn: Db) -> TemplatePublic:
    return public(templates.get_template(conn, principal.workspace_id, template_id))


@app.patch("/api/templates/{template_id}", response_model=TemplatePublic,
           summary="Change some fields: makes a new version")
def patch(template_id: str, body: TemplatePatch, principal: AdminKey, conn: Db) -> TemplatePublic:
    changes: dict[str, Any] = dict(body.model_extra or {})
    with conn.transaction():
        row = templates.update_template(conn, principal.workspace_id, template_id, actor=principal.actor,
                                        name=body.name, patch=changes)
        record(conn, principal, "template.updated", template_id,
               {"version": row["latest_version"], "fields": sorted(changes)})
    return public(row)


@app.put("/api/templates/{template_id}", response_model=TemplatePublic,
         summary="Replace the whole config (fields left out take defaults): makes a new version")
def replace(template_id: str, body: TemplateCreate, principal: AdminKey, conn: Db) -> TemplatePublic:
    with conn.transaction():
        row = templates.update_template(conn, principal.workspace_id, template_id, actor=principal.actor,
                                        name=body.name, replace=_config_of(body))
        record(conn, principal, "template.updated", template_id, {"version": row["latest_version"], "replaced": True})
    return public(row)


@app.get("/api/templates/{template_id}/versions", response_model=VersionsPublic,
         summary="List a template's versions, newest first")
def list_versions(template_id: str, principal: AdminKey, conn: Db) -> VersionsPublic:
    rows = templates.list_versions(conn, principal.workspace_id, template_id)
    return VersionsPublic(data=[version_public(r) for r in rows], count=len(rows))


@app.get("/api/templates/{template_id}/versions/{version}", response_model=VersionPublic,
         summary="Read one version")
def read_version(template_id: str, version: Annotated[int, Path(ge=1, le=2_147_483_647)], principal: AdminKey,
                 conn: Db) -> VersionPublic:
    return version_public(templates.get_version(conn, principal.workspace_id, template_id, version))


@app.delete("/api/templates/{template_id}", status_code=204, summary="Delete a template no assistant uses")
def delete(template_id: str, principal: AdminKey, conn: Db) -> None:
    with conn.transaction():
        templates.delete_template(conn, principal.workspace_id, template_id)
        record(conn, principal, "template.deleted", template_id)


@app.put("/api/templates/{template_id}/gate", response_model=TemplatePublic,
         summary="Gate the template on an evaluation set: new versions wait for a passing run")
def set_gate(template_id: str, body: GateIn, principal: AdminKey, conn: Db) -> TemplatePublic:
    with conn.transaction():
        gates.set_gate(conn, principal.workspace_id, template_id, body.set_id, body.tolerances)
        record(conn, principal, "template.gated", template_id, body.model_dump())
    return public(templates.get_template(conn, principal.workspace_id, template_id))


@app.delete("/api/templates/{template_id}/gate", status_code=204,
            summary="Remove the gate: assistants follow the latest version again")
def drop_gate(template_id: str, principal: AdminKey, conn: Db) -> None:
    with conn.transaction():
        gates.drop_gate(conn, principal.workspace_id, template_id)
        record(conn, principal, "template.ungated", template_id)


@app.post("/api/templates/{template_id}/versions/{version}/publish", response_model=PublishOut,
          summary="Publish a version of a gated template (409 with the failing metrics unless it passes)")
def publish(template_id: str, version: Annotated[int, Path(ge=1, le=2_147_483_647)], principal: AdminKey, conn: Db,
            body: Annotated[PublishIn | None, Body()] = None) -> PublishOut:
    given = body or PublishIn()
    with conn.transaction():  # the override, if any, is committed with its audit entry or not at all
        verdict = gates.publish(conn, principal.workspace_id, template_id, version, override=given.override)
        record(conn, principal, "template.published", template_id, gates.audit_details(verdict, given.reason))
    return PublishOut(template_id=template_id, published_version=version, verdict=verdict)


lambda_handler = Mangum(app)
