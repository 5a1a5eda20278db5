"""Load an assistant with its effective configuration (template version + overrides), cached in Redis.

The cache holds the whole ResolvedAssistant as JSON under `asst:{workspace}:{id}` for five minutes.
Every change that can alter an effective config (assistant update or delete, template update) replaces
the key with a short-lived tombstone inside the writer's transaction; readers only fill an absent key
(SET NX), so a reader that loaded the old row just before the change can't put it back. A Redis
outage or a cold cache costs a SQL statement, never a different answer.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import NotFound, ServiceUnavailable, Unprocessable
from shared.core.kv import get_kv, optional_kv
from shared.core.metrics import count_cache
from shared.guard.auth import Principal
from shared.workspace.template_config import TemplateConfig, validate_config

log = logging.getLogger("dialog_engine.assistants")

CACHE_TTL_S = 300
TOMBSTONE = "-"
TOMBSTONE_TTL_S = 10  # outlives any reader that loaded the old row before the writer committed

# The assistant, and the pinned version of its template (built-in or the workspace's), else the published one
# (a gated template, shared/evals/gates.py), else the latest.
SELECT_ASSISTANTS = """
    SELECT a.id, a.workspace_id, a.name, a.template_id, a.template_version AS pinned_version,
           a.overrides, a.allowed_origins, a.limits, a.created_at, a.updated_at,
           v.version AS template_version, v.config AS template_config
    FROM assistants a
    JOIN templates t ON t.id = a.template_id AND (t.workspace_id = a.workspace_id OR t.workspace_id IS NULL)
    JOIN template_versions v ON v.template_id = t.id
         AND v.version = coalesce(a.template_version, t.published_version, t.latest_version)"""
# One statement for a chat turn's cache miss.
LOAD_ASSISTANT = SELECT_ASSISTANTS + "\n    WHERE a.id = %s AND a.workspace_id = %s"


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


def cache_key(workspace_id: str, assistant_id: str) -> str:
    return f"asst:{workspace_id}:{assistant_id}"


def to_json(assistant: ResolvedAssistant) -> str:
    data = asdict(assistant)
    data["config"] = assistant.config.model_dump(mode="json")
    return json.dumps(data, separators=(",", ":"), default=str)


def from_json(raw: str) -> ResolvedAssistant:
    data = json.loads(raw)
    data["config"] = TemplateConfig.model_validate(data["config"])
    data["allowed_origins"] = tuple(data["allowed_origins"])
    return ResolvedAssistant(**data)


def get_assistant(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> ResolvedAssistant:
    """load_assistant through the Redis cache: one Redis call on a hit; a miss adds one SQL statement and a SET."""
    key = cache_key(workspace_id, assistant_id)
    kv, raw = optional_kv(), None
    try:
        raw = kv.get(key) if kv is not None else None
    except ServiceUnavailable:
        kv = None  # Redis down: Postgres alone still gives the right answer
    count_cache("assistant", raw is not None and raw != TOMBSTONE, workspace_id)
    if raw is not None and raw != TOMBSTONE:
        try:
            return from_json(raw)
        except (ValueError, TypeError, KeyError):
            log.warning("unreadable cache entry %s; reloading", key)
    assistant = load_assistant(conn, workspace_id, assistant_id)
    if kv is not None and raw != TOMBSTONE:
        try:
            # NX: never overwrite a tombstone a writer set after we read the row.
            kv.pipeline([["SET", key, to_json(assistant), "EX", CACHE_TTL_S, "NX"]])
        except ServiceUnavailable:
            pass
    return assistant


# The assistant this instance saw last, per (workspace, assistant): chat admission plans its one Redis round
# trip with it (shared.dialog.turn_gate); the entry read back confirms it. Writers here forget it at once.
_seen: dict[tuple[str, str], ResolvedAssistant] = {}
_seen_lock = threading.Lock()
MAX_SEEN = 1_000


def remembered(workspace_id: str, assistant_id: str) -> ResolvedAssistant | None:
    return _seen.get((workspace_id, assistant_id))


def remember(workspace_id: str, assistant_id: str, assistant: ResolvedAssistant) -> None:
    with _seen_lock:
        if len(_seen) >= MAX_SEEN:
            _seen.clear()
        _seen[(workspace_id, assistant_id)] = assistant


def forget(workspace_id: str, assistant_ids: list[str] | None = None) -> None:
    """Drop remembered assistants (a writer changed them): the next turn reads the entry first."""
    with _seen_lock:
        for key in [k for k in _seen if k[0] == workspace_id and (assistant_ids is None or k[1] in assistant_ids)]:
            _seen.pop(key, None)


def invalidate(workspace_id: str, assistant_ids: list[str]) -> None:
    """Replace the cached entries with tombstones; call inside the writer's transaction, before it commits.

    Raises ServiceUnavailable when Redis is down, so the change rolls back instead of leaving a stale entry.
    """
    if assistant_ids:
        forget(workspace_id, assistant_ids)  # this instance's copy at once (other instances read the tombstone)
        get_kv().pipeline([["SET", cache_key(workspace_id, a), TOMBSTONE, "EX", TOMBSTONE_TTL_S]
                           for a in assistant_ids])


def invalidate_template_users(conn: psycopg.Connection[Row], workspace_id: str, template_id: str) -> list[str]:
    """Invalidate every assistant of the workspace built on this template; returns their ids."""
    ids = [r["id"] for r in fetch_all(conn, "SELECT id FROM assistants WHERE workspace_id = %s AND template_id = %s",
                                      (workspace_id, template_id))]
    invalidate(workspace_id, ids)
    return ids


# --- Admin CRUD (the chat path only reads) ---------------------------------------------------------

TEMPLATE_FOR_ASSISTANT = """
    SELECT t.id, t.latest_version, v.version, v.config
    FROM templates t
    LEFT JOIN template_versions v ON v.template_id = t.id
         AND v.version = coalesce(%(version)s::int, t.published_version, t.latest_version)
    WHERE t.id = %(template_id)s AND (t.workspace_id = %(ws)s OR t.workspace_id IS NULL)"""


def check_config(conn: psycopg.Connection[Row], workspace_id: str, template_id: str, template_version: int | None,
                 overrides: dict[str, Any]) -> TemplateConfig:
    """The effective config these settings would give, or NotFound / Unprocessable naming the field at fault."""
    row = fetch_one(conn, TEMPLATE_FOR_ASSISTANT,
                    {"version": template_version, "template_id": template_id, "ws": workspace_id})
    if row is None:
        raise NotFound(f"No template {template_id!r} in this workspace.", code="template_not_found",
                       details=[{"field": "template_id", "problem": "no such template"}])
    if row["version"] is None:
        raise Unprocessable(f"Invalid request: check template_version: template {template_id!r} has no version "
                            f"{template_version} (its latest is {row['latest_version']}).",
                            details=[{"field": "template_version", "problem": "no such version"}])
    return validate_config(merge_overrides(row["config"], overrides), field_prefix="overrides")


def get_assistant_row(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> Row:
    """The stored assistant with its template version's config (uncached: admin reads want the truth)."""
    row = fetch_one(conn, LOAD_ASSISTANT, (assistant_id, workspace_id))
    if row is None:
        raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
    return row


def list_assistants(conn: psycopg.Connection[Row], workspace_id: str, limit: int,
                    cursor: list[Any] | None = None) -> list[Row]:
    """Newest first; fetches limit+1 rows so the caller can tell whether another page follows."""
    where, params = "a.workspace_id = %s", [workspace_id]
    if cursor:
        where += " AND (a.created_at, a.id) < (%s::timestamptz, %s)"
        params += cursor
    return fetch_all(conn, f"{SELECT_ASSISTANTS} WHERE {where} ORDER BY a.created_at DESC, a.id DESC LIMIT %s",
                     (*params, limit + 1))


def reachable_assistants(conn: psycopg.Connection[Row], principal: Principal,
                         assistant_id: str | None = None) -> list[Row]:
    """id, name and created_at of the assistants `principal` reaches (a chat key: those it was made for), oldest
    first; only `assistant_id` when given."""
    reachable = list(principal.assistant_ids) if principal.assistant_ids is not None else None
    return fetch_all(conn, """SELECT id, name, created_at FROM assistants WHERE workspace_id = %s
                              AND (%s::text IS NULL OR id = %s) AND (%s::text[] IS NULL OR id = ANY(%s::text[]))
                              ORDER BY created_at, id""",
                     (principal.workspace_id, assistant_id, assistant_id, reachable, reachable))


def create_assistant(conn: psycopg.Connection[Row], workspace_id: str, fields: dict[str, Any]) -> Row:
    """Insert after checking the template, the pinned version and the overrides; returns the full row."""
    check_config(conn, workspace_id, fields["template_id"], fields["template_version"], fields["overrides"])
    row = fetch_one(conn, """
        INSERT INTO assistants (workspace_id, name, template_id, template_version, overrides, allowed_origins, limits)
        VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (workspace_id, fields["name"], fields["template_id"], fields["template_version"], Jsonb(fields["overrides"]),
         fields["allowed_origins"], Jsonb(fields["limits"])))
    assert row is not None
    return get_assistant_row(conn, workspace_id, row["id"])


def update_assistant(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str,
                     changes: dict[str, Any]) -> Row:
    """Apply the given fields (a new template without a version follows its latest); invalidates the cache."""
    with conn.transaction():
        current = fetch_one(conn, """SELECT name, template_id, template_version, overrides, allowed_origins, limits
                                     FROM assistants WHERE id = %s AND workspace_id = %s FOR UPDATE""",
                            (assistant_id, workspace_id))
        if current is None:
            raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
        if changes.get("template_id", current["template_id"]) != current["template_id"]:
            current["template_version"] = None
        new = {**current, **changes}
        check_config(conn, workspace_id, new["template_id"], new["template_version"], new["overrides"])
        conn.execute("""
            UPDATE assistants SET name = %s, template_id = %s, template_version = %s, overrides = %s,
                                  allowed_origins = %s, limits = %s, updated_at = now()
            WHERE id = %s AND workspace_id = %s""",
            (new["name"], new["template_id"], new["template_version"], Jsonb(new["overrides"]),
             new["allowed_origins"], Jsonb(new["limits"]), assistant_id, workspace_id))
        invalidate(workspace_id, [assistant_id])
    return get_assistant_row(conn, workspace_id, assistant_id)


def delete_assistant(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> None:
    """Delete with everything that hangs off it: rows cascade; an external index (Pinecone) is told too.

    Any failure rolls the delete back, so it can simply be retried.
    """
    from shared.knowledge.vectors import get_vector_store

    with conn.transaction():
        if fetch_one(conn, "DELETE FROM assistants WHERE id = %s AND workspace_id = %s RETURNING id",
                     (assistant_id, workspace_id)) is None:
            raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
        store = get_vector_store()
        if store.name != "pgvector":  # pgvector keeps vectors in the chunk rows, which cascaded already
            store.delete_by_filter(workspace_id, assistant_id=assistant_id, conn=conn)
        invalidate(workspace_id, [assistant_id])
