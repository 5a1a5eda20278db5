"""Numbered plain-SQL migrations, applied in order and recorded in schema_migrations.

Each migration runs in one transaction, except a file whose first line is `-- migrate: no-transaction`:
its statements (separated by `;` at the end of a line, no $$ bodies) run one by one in autocommit, which
CREATE INDEX CONCURRENTLY needs. An index on a table an earlier migration created must be built that way:
a plain CREATE INDEX blocks every write to the table (ingestion, chat history) while it builds, which on a
large table is minutes of failed requests. tests/test_settings_and_migrations.py fails on a migration that
doesn't (unsafe_index_builds). A concurrent build that was interrupted leaves an invalid index behind;
the next run drops it and builds it again, so a failed deploy can simply be retried.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import psycopg.sql
from psycopg.types.json import Jsonb

from shared.core.settings import get_settings
from shared.workspace.template_config import DEFAULT_TEMPLATE

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_ID = 724_113  # advisory lock: two deploys migrating at once take turns
NO_TRANSACTION = "-- migrate: no-transaction"
# 0002 built chunks_source without CONCURRENTLY. It is left as it was: it has run in every deployment, and
# the code that first wrote chunks shipped together with it, so chunks was still empty whenever it ran.
# Editing an applied migration changes nothing for existing databases and only muddies the history.
GRANDFATHERED = frozenset({2})


class MigrationError(RuntimeError):
    """A migration can't be applied as written; the message says what to do."""


class EmbeddingColumnMismatch(MigrationError):
    """Every migration is applied, but stored vectors have another size than EMBEDDING_DIMENSIONS."""


def migration_files(directory: Path | None = None) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted((directory or MIGRATIONS_DIR).glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    return found


def migrate(url: str | None = None, directory: Path | None = None) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied (empty when up to date)."""
    applied_now = []
    with psycopg.connect(url or get_settings().session_database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, path in migration_files(directory):
                if version in done:
                    continue
                sql = path.read_text()
                if is_no_transaction(sql):
                    run_without_transaction(conn, path.name, sql)
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                else:
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                     (version, name))
                applied_now.append(path.name)
            if directory is None:  # another folder (tests) has no templates table
                ensure_default_template(conn)
                ensure_source_kinds(conn)
                resized = ensure_embedding_column(conn)
                applied_now += [resized] if resized else []
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now


def ensure_embedding_column(conn: psycopg.Connection) -> str | None:
    """chunks.embedding follows EMBEDDING_DIMENSIONS (a setting, so not a numbered migration): sized while it
    holds no vectors, a MigrationError naming the setting when vectors of another size are stored."""
    from shared.knowledge.vectors.dimensions import EmbeddingDimensionsMismatch, ensure_column

    try:
        return ensure_column(conn, get_settings().embedding_dimensions)
    except EmbeddingDimensionsMismatch as exc:
        raise EmbeddingColumnMismatch(exc.message) from None


def is_no_transaction(sql: str) -> bool:
    return sql.lstrip().lower().startswith(NO_TRANSACTION)


def statements(sql: str) -> list[str]:
    """A no-transaction migration's statements: comments dropped, split at a `;` that ends a line."""
    text = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [part.strip() for part in re.split(r";[ \t]*(?:\n|$)", text) if part.strip()]


CONCURRENT_INDEX = re.compile(r"(?is)^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                              r"(\"?[a-z_][\w$]*\"?)\s+ON\b")


def run_without_transaction(conn: psycopg.Connection, name: str, sql: str) -> None:
    if "$$" in sql:
        raise MigrationError(f"{name}: a no-transaction migration can't hold $$ bodies "
                             "(its statements are split at ';')")
    for statement in statements(sql):
        index = CONCURRENT_INDEX.match(statement)
        if index:  # an interrupted earlier attempt left it invalid; IF NOT EXISTS would keep it that way
            drop_invalid_index(conn, index.group(1).strip('"'))
        conn.execute(statement)
    invalid = [row[0] for row in conn.execute("""
        SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace""")]
    if invalid:
        raise MigrationError(f"{name} left invalid indexes {', '.join(invalid)}: drop them with "
                             "DROP INDEX CONCURRENTLY and migrate again")


def drop_invalid_index(conn: psycopg.Connection, index: str) -> None:
    row = conn.execute("""
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace AND NOT i.indisvalid""",
        (index,)).fetchone()
    if row:
        conn.execute(psycopg.sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(psycopg.sql.Identifier(index)))


CREATE_TABLE = re.compile(r"(?i)\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)")
CREATE_INDEX = re.compile(r"(?i)\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                          r"(?:[\w.\"]+\s+)?ON\s+(?:ONLY\s+)?([\w.\"]+)")
ADD_CONSTRAINT_INDEX = re.compile(r"(?is)\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?([\w.\"]+)[^;]*?\bADD\s+"
                                  r"(?:CONSTRAINT\s+\S+\s+)?(?:UNIQUE|PRIMARY\s+KEY|EXCLUDE)\b(?!\s+USING\s+INDEX)")


def unsafe_index_builds(directory: Path | None = None) -> list[str]:
    """Index builds that would block writes to a table an earlier migration created (so possibly large)."""
    problems, existing = [], set()
    for version, _, path in migration_files(directory):
        sql = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        for concurrently, table in CREATE_INDEX.findall(sql):
            table = _table(table)
            if table in existing and version not in GRANDFATHERED and not (concurrently and is_no_transaction(
                    path.read_text())):
                problems.append(f"{path.name}: CREATE INDEX on {table} must be CONCURRENTLY in a migration whose "
                                f"first line is '{NO_TRANSACTION}'")
        for table in ADD_CONSTRAINT_INDEX.findall(sql):
            if _table(table) in existing and version not in GRANDFATHERED:
                problems.append(f"{path.name}: a UNIQUE/PRIMARY KEY/EXCLUDE constraint on {_table(table)} builds its "
                                "index under a lock: CREATE UNIQUE INDEX CONCURRENTLY first, then ADD ... USING INDEX")
        existing |= {_table(t) for t in CREATE_TABLE.findall(sql)}
    return problems


def _table(name: str) -> str:
    return name.replace('"', "").lower().removeprefix("public.")


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


def ensure_source_kinds(conn: psycopg.Connection) -> None:
    """Every kind the registry declares (shared.knowledge) is a row of source_kinds, which sources.kind references;
    a kind no longer declared keeps its row while sources of it exist."""
    from shared.knowledge import registry

    conn.execute("INSERT INTO source_kinds (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                 (list(registry()),))


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
    with psycopg.connect(url or get_settings().session_database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return migrate(url)
