"""Templates and their versions: every change is a new version; the built-in `default` is read-only.

Assistants following a template use its latest version, or, when the template is gated on an evaluation set,
its published version (new versions are drafts until they pass: shared/evals/gates.py)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import Conflict, Forbidden, NotFound
from shared.workspace.assistants import invalidate_template_users, merge_overrides
from shared.workspace.template_config import TemplateConfig, validate_config

# A template visible to the workspace (its own or built-in) with its latest version's config.
SELECT_TEMPLATES = """
    SELECT t.id, t.workspace_id, t.name, t.latest_version, t.published_version, t.gate, t.created_at, t.updated_at,
           v.config, v.created_by
    FROM templates t
    JOIN template_versions v ON v.template_id = t.id AND v.version = t.latest_version
    WHERE (t.workspace_id = %(ws)s OR t.workspace_id IS NULL)"""


def _not_found(template_id: str) -> NotFound:
    return NotFound(f"No template {template_id!r} in this workspace.", code="template_not_found")


def _read_only() -> Forbidden:
    return Forbidden("The built-in template can't be changed or deleted; create a template of your own instead.",
                     code="builtin_template_read_only")


def list_templates(conn: psycopg.Connection[Row], workspace_id: str) -> list[Row]:
    """The built-in templates first, then the workspace's, oldest first."""
    return fetch_all(conn, SELECT_TEMPLATES + " ORDER BY t.workspace_id NULLS FIRST, t.created_at, t.id",
                     {"ws": workspace_id})


def get_template(conn: psycopg.Connection[Row], workspace_id: str, template_id: str) -> Row:
    row = fetch_one(conn, SELECT_TEMPLATES + " AND t.id = %(id)s", {"ws": workspace_id, "id": template_id})
    if row is None:
        raise _not_found(template_id)
    return row


def create_template(conn: psycopg.Connection[Row], workspace_id: str, name: str, config: TemplateConfig,
                    actor: str) -> Row:
    """A new template with version 1, in one statement."""
    row = fetch_one(conn, """
        WITH t AS (INSERT INTO templates (workspace_id, name) VALUES (%(ws)s, %(name)s) RETURNING id)
        INSERT INTO template_versions (template_id, version, workspace_id, config, created_by)
        SELECT t.id, 1, %(ws)s, %(config)s, %(actor)s FROM t RETURNING template_id""",
        {"ws": workspace_id, "name": name, "config": Jsonb(config.model_dump(mode="json")), "actor": actor})
    assert row is not None
    return get_template(conn, workspace_id, row["template_id"])


def update_template(conn: psycopg.Connection[Row], workspace_id: str, template_id: str, *, actor: str,
                    name: str | None = None, patch: dict[str, Any] | None = None,
                    replace: TemplateConfig | None = None) -> Row:
    """Store a new version: `replace` is the whole config (PUT), `patch` is merged into the latest (PATCH).

    The older versions stay readable; assistants following the latest see the change at once (their cache
    entries are invalidated in the same transaction), unless the template is gated: then the new version is a
    draft until it is published.
    """
    with conn.transaction():
        current = fetch_one(conn, """
            SELECT t.workspace_id, v.config FROM templates t
            JOIN template_versions v ON v.template_id = t.id AND v.version = t.latest_version
            WHERE t.id = %s AND (t.workspace_id = %s OR t.workspace_id IS NULL) FOR UPDATE OF t""",
            (template_id, workspace_id))
        if current is None:
            raise _not_found(template_id)
        if current["workspace_id"] is None:
            raise _read_only()
        config = replace if replace is not None else validate_config(merge_overrides(current["config"], patch or {}))
        conn.execute("""
            WITH t AS (UPDATE templates SET latest_version = latest_version + 1, name = coalesce(%(name)s, name),
                                            updated_at = now()
                       WHERE id = %(id)s AND workspace_id = %(ws)s RETURNING latest_version)
            INSERT INTO template_versions (template_id, version, workspace_id, config, created_by)
            SELECT %(id)s, t.latest_version, %(ws)s, %(config)s, %(actor)s FROM t""",
            {"id": template_id, "ws": workspace_id, "name": name, "actor": actor,
             "config": Jsonb(config.model_dump(mode="json"))})
        invalidate_template_users(conn, workspace_id, template_id)
    return get_template(conn, workspace_id, template_id)


def list_versions(conn: psycopg.Connection[Row], workspace_id: str, template_id: str) -> list[Row]:
    """Every version, newest first (NotFound when the template isn't visible to the workspace)."""
    rows = fetch_all(conn, """
        SELECT t.id AS template_id, v.version, v.config, v.created_by, v.created_at, t.latest_version,
               t.published_version
        FROM templates t LEFT JOIN template_versions v ON v.template_id = t.id
        WHERE t.id = %s AND (t.workspace_id = %s OR t.workspace_id IS NULL)
        ORDER BY v.version DESC""", (template_id, workspace_id))
    if not rows:
        raise _not_found(template_id)
    return [r for r in rows if r["version"] is not None]


def get_version(conn: psycopg.Connection[Row], workspace_id: str, template_id: str, version: int) -> Row:
    row = fetch_one(conn, """
        SELECT t.id AS template_id, v.version, v.config, v.created_by, v.created_at, t.latest_version,
               t.published_version
        FROM templates t JOIN template_versions v ON v.template_id = t.id AND v.version = %s
        WHERE t.id = %s AND (t.workspace_id = %s OR t.workspace_id IS NULL)""", (version, template_id, workspace_id))
    if row is None:
        get_template(conn, workspace_id, template_id)  # a missing template says so, not "no such version"
        raise NotFound(f"Template {template_id!r} has no version {version}.", code="template_version_not_found")
    return row


def delete_template(conn: psycopg.Connection[Row], workspace_id: str, template_id: str) -> None:
    """Delete a workspace template and its versions; refused while an assistant uses it."""
    with conn.transaction():
        row = fetch_one(conn, """SELECT workspace_id FROM templates
                                 WHERE id = %s AND (workspace_id = %s OR workspace_id IS NULL) FOR UPDATE""",
                        (template_id, workspace_id))
        if row is None:
            raise _not_found(template_id)
        if row["workspace_id"] is None:
            raise _read_only()
        users = fetch_all(conn, "SELECT id FROM assistants WHERE template_id = %s AND workspace_id = %s LIMIT 20",
                          (template_id, workspace_id))
        if users:
            raise Conflict("Assistants still use this template; move them to another template first.",
                           code="template_in_use", details={"assistant_ids": [u["id"] for u in users]})
        conn.execute("DELETE FROM templates WHERE id = %s AND workspace_id = %s", (template_id, workspace_id))
