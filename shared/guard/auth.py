"""API keys: random, shown once, stored as a sha256 hash with a visible prefix; scopes admin and chat."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import psycopg
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from shared.core.db import Row, connect, fetch_one
from shared.core.errors import Forbidden, NotFound, Unauthorized
from shared.core.settings import get_settings
from shared.guard.origins import require_origin

Scope = Literal["admin", "chat"]
KEY_PREFIX = {"admin": "de_admin_", "chat": "de_chat_"}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one workspace with one scope."""

    workspace_id: str
    scope: Scope
    key_id: str | None = None
    allowed_origins: tuple[str, ...] = field(default=())
    actor: str = ""
    # Chat keys: the assistants the key was made for (None: every assistant of the workspace, admin keys
    # and console sessions), identity verification (secrets never in reprs or logs).
    assistant_ids: tuple[str, ...] | None = None
    require_identity: bool = False
    identity_secret: str | None = field(default=None, repr=False)
    visitor_secret: str = field(default="", repr=False)

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    @property
    def owner(self) -> str:
        """What marks the conversations this caller started: its key, or its signed-in user."""
        return self.key_id or self.actor

    def reaches(self, assistant_id: str) -> bool:
        return self.assistant_ids is None or assistant_id in self.assistant_ids

    def check_assistant(self, assistant_id: str) -> None:
        """A chat key made for other assistants gets the same 404 as for an assistant that doesn't exist."""
        if not self.reaches(assistant_id):
            raise NotFound("No such assistant in this workspace.", code="assistant_not_found")


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(scope: Scope) -> tuple[str, str, str]:
    """A fresh key: (key shown once, prefix kept for display, hash stored)."""
    key = KEY_PREFIX[scope] + secrets.token_urlsafe(32)
    return key, key[: len(KEY_PREFIX[scope]) + 6], hash_key(key)


KEY_COLUMNS = ("id, name, prefix, scope, allowed_origins, assistant_ids, require_identity, "
               "identity_secret IS NOT NULL AS has_identity_secret, created_at, last_used_at, revoked_at")


def new_identity_secret() -> str:
    return "de_idsec_" + secrets.token_urlsafe(32)


def create_key(conn: psycopg.Connection[Row], workspace_id: str, scope: Scope, name: str = "",
               allowed_origins: list[str] | None = None, assistant_ids: list[str] | None = None,
               require_identity: bool = False) -> tuple[str, Row]:
    """Store a new key; returns the key (to show once) and its public row. A chat key also gets an
    identity secret, returned once in the row as `identity_secret`."""
    key, prefix, digest = new_key(scope)
    identity_secret = new_identity_secret() if scope == "chat" else None
    row = fetch_one(conn, f"""
        INSERT INTO api_keys (workspace_id, name, prefix, hash, scope, allowed_origins, assistant_ids,
                              identity_secret, require_identity)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING {KEY_COLUMNS}""",
        (workspace_id, name, prefix, digest, scope, allowed_origins or [],
         (assistant_ids or []) if scope == "chat" else [], identity_secret, require_identity and scope == "chat"))
    assert row is not None
    return key, {**row, "identity_secret": identity_secret}


def create_workspace(conn: psycopg.Connection[Row], name: str) -> tuple[Row, str]:
    """A new workspace and its first admin key (returned once)."""
    with conn.transaction():
        workspace = fetch_one(conn, "INSERT INTO workspaces (name) VALUES (%s) RETURNING id, name, created_at", (name,))
        assert workspace is not None
        key, _ = create_key(conn, workspace["id"], "admin", name="first admin key")
    return workspace, key


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


# Keys found valid, by hash -> (principal, until when it is trusted without asking the database). A revoked
# or changed key is forgotten at once on the instance that changed it, elsewhere within AUTH_CACHE_S.
_known: dict[str, tuple[Principal, float]] = {}
_known_lock = threading.Lock()
MAX_KNOWN = 2_000


def known_principal(key: str) -> Principal | None:
    """The key's principal when it was found valid less than AUTH_CACHE_S ago in this process (no query)."""
    entry = _known.get(hash_key(key))
    if entry is None or entry[1] < time.monotonic():
        return None
    return entry[0]


def forget_keys(key_ids: list[str] | None = None) -> None:
    """Drop cached principals of these keys (all with None): after a revoke or a change of the key."""
    with _known_lock:
        for digest in [d for d, (p, _) in _known.items() if key_ids is None or p.key_id in key_ids]:
            _known.pop(digest, None)


def principal_for_key(conn: psycopg.Connection[Row], key: str) -> Principal:
    """The key's principal: from this process's short cache, else one statement (which also notes the use)."""
    cached = known_principal(key)
    if cached is not None:
        return cached
    principal = _load_principal(conn, key)
    ttl = get_settings().auth_cache_s
    if ttl > 0:
        with _known_lock:
            if len(_known) >= MAX_KNOWN:
                _known.clear()  # bounded whatever keys are tried; the valid ones come back with one query each
            _known[hash_key(key)] = (principal, time.monotonic() + ttl)
    return principal


def _load_principal(conn: psycopg.Connection[Row], key: str) -> Principal:
    # One statement; last_used_at is written at most once a minute, so most requests only read.
    row = fetch_one(conn, """
        WITH k AS (SELECT id, workspace_id, scope, allowed_origins, assistant_ids, require_identity,
                          identity_secret, visitor_secret, last_used_at FROM api_keys
                   WHERE hash = %s AND revoked_at IS NULL),
             touched AS (UPDATE api_keys a SET last_used_at = now() FROM k WHERE a.id = k.id
                         AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds'))
        SELECT id, workspace_id, scope, allowed_origins, assistant_ids, require_identity, identity_secret,
               visitor_secret FROM k""", (hash_key(key),))
    if row is None:
        raise Unauthorized("The API key is not valid or has been revoked.", code="invalid_api_key")
    chat = row["scope"] == "chat"
    return Principal(workspace_id=row["workspace_id"], scope=row["scope"], key_id=row["id"],
                     allowed_origins=tuple(row["allowed_origins"]), actor=f"key:{row['id']}",
                     assistant_ids=tuple(row["assistant_ids"]) if chat else None,
                     require_identity=chat and row["require_identity"], identity_secret=row["identity_secret"],
                     visitor_secret=row["visitor_secret"])


async def credentials_present(request: Request) -> None:
    """401 for a request with no key and no session, before the database connection is opened (require_key
    runs this dependency first): anonymous noise must not cost a database session each."""
    if not bearer_token(request) and "session-token" not in request.headers.get("cookie", ""):
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>' (or a NextAuth session token).",
                           code="missing_api_key")


async def require_key(request: Request, _: Annotated[None, Depends(credentials_present)]) -> Principal:
    """Any valid key of any scope (chat routes), or a NextAuth / Auth.js session (shared.guard.nextauth).

    A key seen valid in the last AUTH_CACHE_S costs no query and no thread; otherwise a pooled connection
    is borrowed for the one statement (a route that needs the database takes its own, from the same pool).
    """
    key = bearer_token(request)
    if key and key.startswith("de_") and (principal := known_principal(key)) is not None:
        check_origin(principal, request.headers.get("origin"))
        return principal
    return await run_in_threadpool(_authenticate, request, key)


def _authenticate(request: Request, key: str | None) -> Principal:
    if key and key.startswith("de_"):
        with connect() as conn:
            principal = principal_for_key(conn, key)
        check_origin(principal, request.headers.get("origin"))
        return principal
    # Not one of our keys: a session token as Bearer (a JOSE object: '{"' in base64url) or in a session cookie.
    if (key and key.startswith("eyJ")) or (not key and "session-token" in request.headers.get("cookie", "")):
        from shared.guard.nextauth import principal_for_request

        with connect() as conn:
            return principal_for_request(request, conn, key)
    if not key:
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>' (or a NextAuth session token).",
                           code="missing_api_key")
    with connect() as conn:
        return principal_for_key(conn, key)


def require_admin(principal: Annotated[Principal, Depends(require_key)]) -> Principal:
    if not principal.is_admin:
        who = "This member's role" if principal.actor.startswith("user:") else "This key"
        raise Forbidden(f"{who} may only chat; this route needs an admin key.", code="admin_key_required")
    return principal


def check_origin(principal: Principal, origin: str | None) -> None:
    """A chat key limited to origins refuses browsers on other sites."""
    if principal.scope == "chat":
        require_origin(origin, principal.allowed_origins, what="this key")

