"""Numbered plain-SQL migrations, applied in order and recorded in schema_migrations."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from shared.settings import get_settings
from shared.template_config import DEFAULT_TEMPLATE

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_ID = 724_113  # advisory lock: two deploys migrating at once take turns


def migration_files() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    return found


def migrate(url: str | None = None) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied (empty when up to date)."""
    applied_now = []
    with psycopg.connect(url or get_settings().database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, path in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied_now.append(path.name)
            ensure_default_template(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now


def ensure_default_template(conn: psycopg.Connection) -> None:
    """The built-in template (DEFAULT_TEMPLATE_ID) always exists; workspace code may not delete it."""
    template_id = get_settings().default_template_id
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO templates (id, workspace_id, name) VALUES (%s, NULL, %s) ON CONFLICT (id) DO NOTHING",
            (template_id, "Default"),
        ).rowcount
        if inserted:
            conn.execute(
                "INSERT INTO template_versions (template_id, version, config, created_by) VALUES (%s, 1, %s, 'system')",
                (template_id, Jsonb(DEFAULT_TEMPLATE.model_dump())),
            )


def new_migration(name: str) -> Path:
    """Create the next numbered, empty migration file."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError("a migration name uses lower-case letters, digits and underscores")
    last = max((v for v, _, _ in migration_files()), default=0)
    path = MIGRATIONS_DIR / f"{last + 1:04d}_{name}.sql"
    path.write_text(f"-- {name.replace('_', ' ')}\n")
    return path


def reset(url: str | None = None) -> list[str]:
    """Drop every table of ours and migrate from scratch (local work only; the CLI asks for --yes)."""
    with psycopg.connect(url or get_settings().database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return migrate(url)
