"""Managing keys (the /api/keys route's helpers): which assistants a chat key reaches, identity secrets."""

from __future__ import annotations

from typing import Any

import psycopg

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import NotFound, Unprocessable
from shared.guard.auth import KEY_COLUMNS, forget_keys, new_identity_secret


def check_assistants(conn: psycopg.Connection[Row], workspace_id: str, scope: str,
                     assistant_ids: list[str] | None) -> list[str]:
    """A chat key names at least one assistant, each of this workspace; admin keys name none."""
    ids = list(dict.fromkeys(assistant_ids or []))
    if scope != "chat":
        if ids:
            raise Unprocessable("Admin keys reach every assistant; `assistant_ids` is for chat keys.",
                                code="assistant_ids_not_allowed",
                                details=[{"field": "assistant_ids", "problem": "only for chat keys"}])
        return []
    if not ids:
        raise Unprocessable("A chat key is made for some assistants: name them in `assistant_ids`.",
                            code="assistant_ids_required",
                            details=[{"field": "assistant_ids", "problem": "at least one assistant id"}])
    found = {r["id"] for r in fetch_all(conn, "SELECT id FROM assistants WHERE workspace_id = %s AND id = ANY(%s)",
                                        (workspace_id, ids))}
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise Unprocessable(f"No such assistant in this workspace: {', '.join(unknown)}.", code="assistant_not_found",
                            details=[{"field": "assistant_ids", "problem": "unknown assistant", "ids": unknown}])
    return ids


def get_key(conn: psycopg.Connection[Row], workspace_id: str, key_id: str) -> Row:
    row = fetch_one(conn, f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = %s AND workspace_id = %s",
                    (key_id, workspace_id))
    if row is None:
        raise NotFound("No such key in this workspace.", code="key_not_found")
    return row


def list_keys(conn: psycopg.Connection[Row], workspace_id: str) -> list[Row]:
    return fetch_all(conn, f"SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = %s ORDER BY created_at",
                     (workspace_id,))


def revoke_key(conn: psycopg.Connection[Row], workspace_id: str, key_id: str) -> Row:
    """Revoked at once (a second revoke keeps the first time); 404 for a key of another workspace."""
    row = fetch_one(conn, f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                              WHERE id = %s AND workspace_id = %s RETURNING {KEY_COLUMNS}""", (key_id, workspace_id))
    if row is None:
        raise NotFound("No such key in this workspace.")
    forget_keys([key_id])  # this instance at once; the others within AUTH_CACHE_S
    return row


def update_key(conn: psycopg.Connection[Row], workspace_id: str, key_id: str, changes: dict[str, Any]) -> Row:
    """Change a key's name, origins, assistants or identity requirement (only the fields given)."""
    current = get_key(conn, workspace_id, key_id)
    if "assistant_ids" in changes:
        changes["assistant_ids"] = check_assistants(conn, workspace_id, current["scope"], changes["assistant_ids"])
    if changes.get("require_identity") and current["scope"] != "chat":
        raise Unprocessable("Only chat keys verify end users.", code="identity_only_for_chat_keys",
                            details=[{"field": "require_identity", "problem": "only for chat keys"}])
    if changes.get("require_identity") and not current["has_identity_secret"]:
        raise Unprocessable("Create an identity secret first (POST /api/keys/{id}/identity-secret).",
                            code="identity_secret_missing",
                            details=[{"field": "require_identity", "problem": "the key has no identity secret"}])
    if not changes:
        return current
    assignments = ", ".join(f"{column} = %({column})s" for column in changes)  # columns: the route's own fields
    row = fetch_one(conn, f"UPDATE api_keys SET {assignments} WHERE id = %(id)s AND workspace_id = %(ws)s "
                          f"RETURNING {KEY_COLUMNS}", {**changes, "id": key_id, "ws": workspace_id})
    assert row is not None
    forget_keys([key_id])
    return row


def rotate_identity_secret(conn: psycopg.Connection[Row], workspace_id: str, key_id: str) -> tuple[str, Row]:
    """A new identity secret for a chat key (the old one stops verifying at once); shown once."""
    secret = new_identity_secret()
    row = fetch_one(conn, f"""UPDATE api_keys SET identity_secret = %s
                              WHERE id = %s AND workspace_id = %s AND scope = 'chat' AND revoked_at IS NULL
                              RETURNING {KEY_COLUMNS}""", (secret, key_id, workspace_id))
    if row is None:
        get_key(conn, workspace_id, key_id)  # NotFound for another workspace's key
        raise Unprocessable("Only active chat keys have an identity secret.", code="identity_only_for_chat_keys")
    forget_keys([key_id])
    return secret, row
