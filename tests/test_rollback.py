"""DEPLOYMENT.md §3 rehearsed: release N serves real data; a backup is made and verified (the pre-deployment
checklist); release N+1 ships an additive migration and writes through it; then the rollback as written:
the code goes back (release N runs on N+1's schema, its own `db migrate` is a no-op, every row survives),
and the data steps (restore the backup into a new database, check it, point DATABASE_URL at it, rebuild the
vectors) give release N's data back while the database that was rolled away from stays for inspection."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from shared.ops.migrate import MIGRATIONS_DIR, migrate
from tests.conftest import ROOT

TEXT = ("Returns and refunds. Refunds are paid back within 14 days of the return. "
        "Parcels ship within two working days from our warehouse in Harbour Street.")
# Release N+1's migration: additive only (a nullable column and a new table), as the checklist requires.
NEXT_MIGRATION = """
ALTER TABLE assistants ADD COLUMN tagline text;
CREATE TABLE assistant_notes (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    assistant_id text NOT NULL,
    body text NOT NULL
);
"""
TABLES = ("workspaces", "assistants", "sources", "documents", "chunks", "conversations", "messages", "api_keys")


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False, env={**os.environ, **env})


def ask(client: Any, assistant: str, question: str) -> dict[str, Any]:
    reply = client.post("/api/chat", json={"assistant_id": assistant, "message": question, "stream": False})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["sources"], body  # a cited answer
    return body


@pytest.mark.timeout(420)  # two ingests with the embedding model, backup, verify, restore, re-embed: CLI runs each
def test_rollback_as_the_runbook_describes_loses_nothing(backups, engine, local_model, tmp_path) -> None:
    # Release N in production: a workspace with knowledge and a conversation.
    workspace, key = engine.workspace("Rollback Co")
    client = engine.client(key)
    assistant = client.post("/api/assistants", json={"name": "Shop"}).json()["id"]
    source = client.post("/api/sources", json={"assistant_id": assistant, "kind": "text", "title": "Shop facts",
                                               "content": TEXT})
    assert source.status_code == 202, source.text
    engine.wait_for_queue(timeout=90)
    first = ask(client, assistant, "When are refunds paid back?")

    # Pre-deployment checklist: a fresh backup exists and restores.
    made = cli("backup", "create")
    assert made.returncode == 0, made.stderr
    verified = cli("backup", "verify")
    assert verified.returncode == 0 and "MISMATCH" not in verified.stdout, verified.stdout + verified.stderr
    at_backup = counts(engine.dsn)

    # Release N+1: `db migrate` with its additive migration, then its code writes through the new schema ...
    newer = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, newer)
    (newer / "0999_release_next.sql").write_text(NEXT_MIGRATION)
    assert migrate(engine.dsn, directory=newer) == ["0999_release_next.sql"]
    with engine.db() as conn:
        conn.execute("UPDATE assistants SET tagline = 'We answer fast' WHERE id = %s", (assistant,))
        conn.execute("INSERT INTO assistant_notes (workspace_id, assistant_id, body) VALUES (%s, %s, 'new in N+1')",
                     (workspace, assistant))
    # ... and users keep talking to it.
    during = ask(client, assistant, "How fast do parcels ship?")

    # Rollback, code: release N serves again on N+1's schema. Its `db migrate` (run by its deploy) applies
    # nothing and does not trip over the newer migration it does not know.
    again = cli("db", "migrate", DATABASE_URL=engine.dsn)
    assert again.returncode == 0, again.stdout + again.stderr
    with engine.db() as conn:
        assert conn.execute("SELECT max(version) AS v FROM schema_migrations").fetchone()["v"] == 999
    after_rollback = ask(client, assistant, "When are refunds paid back?")
    assert client.get(f"/api/assistants/{assistant}").status_code == 200
    added = client.post("/api/sources", json={"assistant_id": assistant, "kind": "text", "title": "Hours",
                                              "content": "Opening hours are nine to five on weekdays."})
    assert added.status_code == 202, added.text  # release N still writes on the newer schema
    engine.wait_for_queue(timeout=90)
    # Nothing lost: every conversation (before, during, after N+1) and N+1's own data are still there.
    with engine.db() as conn:
        conversations = {r["id"] for r in conn.execute("SELECT id FROM conversations WHERE workspace_id = %s",
                                                        (workspace,)).fetchall()}
        assert {first["conversation_id"], during["conversation_id"], after_rollback["conversation_id"]} <= conversations
        assert conn.execute("SELECT tagline FROM assistants WHERE id = %s", (assistant,)).fetchone()["tagline"] \
            == "We answer fast"
        assert conn.execute("SELECT body FROM assistant_notes").fetchone()["body"] == "new in N+1"
    now = counts(engine.dsn)
    assert all(now[t] >= at_backup[t] for t in TABLES), (at_backup, now)

    # Rollback, data: restore the backup into a new database, check it, point DATABASE_URL at it.
    target = backups.other_db("restored")
    listed = cli("backup", "list")
    assert listed.returncode == 0 and "backups/" in listed.stdout, listed.stderr
    restored = cli("backup", "restore", "latest", "--target-url", target, "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    health = cli("health", "db", DATABASE_URL=target)
    assert health.returncode == 0, health.stdout + health.stderr
    assert counts(target) == at_backup  # release N's data, row for row
    with psycopg.connect(target, row_factory=dict_row) as conn:
        assert conn.execute("SELECT max(version) AS v FROM schema_migrations").fetchone()["v"] < 999
        assert conn.execute("SELECT to_regclass('assistant_notes') AS t").fetchone()["t"] is None
        assert conn.execute("SELECT 1 FROM conversations WHERE id = %s",
                            (first["conversation_id"],)).fetchone()
    # Vectors are derived data: rebuilt from the restored chunks, with the local stack's embedding model.
    with psycopg.connect(target) as conn:
        conn.execute("UPDATE chunks SET embedding = NULL")  # as after a lost Pinecone index: nothing to search by
    vectors = cli("vectorize", "all", DATABASE_URL=target)
    assert vectors.returncode == 0, vectors.stdout + vectors.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FILTER (WHERE embedding IS NULL), count(*) FROM chunks").fetchone() \
            == (0, at_backup["chunks"])
    # The database rolled away from stays for inspection, everything in it: the runbook never drops it.
    assert counts(engine.dsn) == now
