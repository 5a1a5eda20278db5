"""Load an assistant with its effective configuration (template version + overrides), cached in Redis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from shared.db import Row, fetch_one
from shared.errors import NotFound
from shared.template_config import TemplateConfig

# One statement: the assistant, and the pinned or latest version of its template (built-in or the workspace's).
LOAD_ASSISTANT = """
    SELECT a.id, a.workspace_id, a.name, a.template_id, a.overrides, a.allowed_origins, a.limits,
           v.version AS template_version, v.config AS template_config
    FROM assistants a
    JOIN templates t ON t.id = a.template_id AND (t.workspace_id = a.workspace_id OR t.workspace_id IS NULL)
    JOIN template_versions v ON v.template_id = t.id AND v.version = coalesce(a.template_version, t.latest_version)
    WHERE a.id = %s AND a.workspace_id = %s"""


@dataclass(frozen=True)
class ResolvedAssistant:
    id: str
    workspace_id: str
    name: str
    template_id: str
    template_version: int
    config: TemplateConfig           # the template version with the assistant's overrides applied
    allowed_origins: tuple[str, ...]
    limits: dict[str, Any]


def merge_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides replace template fields; nested objects (retrieval) merge key by key."""
    merged = dict(config)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def resolve(row: Row) -> ResolvedAssistant:
    config = TemplateConfig.model_validate(merge_overrides(row["template_config"], row["overrides"] or {}))
    return ResolvedAssistant(id=row["id"], workspace_id=row["workspace_id"], name=row["name"],
                             template_id=row["template_id"], template_version=row["template_version"],
                             config=config, allowed_origins=tuple(row["allowed_origins"] or ()),
                             limits=row["limits"] or {})


def load_assistant(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> ResolvedAssistant:
    """The assistant of this workspace, or NotFound (another workspace's id is simply not found)."""
    row = fetch_one(conn, LOAD_ASSISTANT, (assistant_id, workspace_id))
    if row is None:
        raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
    return resolve(row)
