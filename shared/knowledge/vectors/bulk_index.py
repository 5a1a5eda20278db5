"""Bulk loads on pgvector: the first sync of a large source writes its vectors with the HNSW index set aside,
and the index is built once when the sync ends (CREATE INDEX CONCURRENTLY, in the `build_vector_index` job).

Why: pgvector adds each vector to the HNSW graph as its row is written, the slow part of ingestion at 1536
dimensions; building the graph once over all rows costs several times less (pgvector's own advice for an
initial load), and is done by parallel workers with the graph in memory.

Other assistants share the table, so this stays safe for them:
- While the index is away their vector searches are exact: the chunks_assistant index finds their rows and
  each distance is computed. Results are the same or better; only a large assistant's search is slower.
- Deferral happens only on a first sync (sources.last_synced_at is NULL) of at least INGEST_BULK_PAGES pages,
  and only while the table holds fewer than BULK_ROWS_PER_PAGE rows per page of that sync (the build over
  everything then costs less than inserting the new vectors one by one). Never on Pinecone, never without
  embeddings, never above pgvector's HNSW size limit.
- It never lasts: the sync's end (ready or failed) queues the build once no other deferring sync runs; the
  hourly resync sweep queues it whenever no deferral is active and the index is missing or left invalid (a
  deleted source, a killed build), and forgets deferrals older than ABANDONED.
- One build at a time (a session advisory lock, released if its function dies); an invalid index left by a
  killed build is dropped before the next attempt. Dropping and creating are CONCURRENTLY: no query or
  ingest job is blocked.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from shared.core.db import Row, fetch_one
from shared.core.settings import get_settings
from shared.knowledge.vectors.dimensions import HNSW_INDEX, HNSW_MAX_DIMENSIONS

log = logging.getLogger("dialog_engine.ingest")

BULK_ROWS_PER_PAGE = 4          # the table may hold up to this many rows per page of the load to defer
ABANDONED = "3 hours"           # a deferral this old is forgotten (its sync stalled): the index comes back
BUILD_LOCK = 0x0D1A_1066        # advisory lock: one index build at a time
INDEX_NAME = "chunks_embedding"


def applies() -> bool:
    """Whether this deployment keeps its vectors in an HNSW index that a bulk load can set aside."""
    from shared.knowledge.embeddings import embeddings_enabled

    settings = get_settings()
    return (settings.resolved_vector_backend == "pgvector" and embeddings_enabled()
            and settings.embedding_dimensions <= HNSW_MAX_DIMENSIONS)


def maybe_defer(conn: psycopg.Connection[Row], source_id: str, generation: int) -> bool:
    """Set the HNSW index aside for this sync when it is a large first one (see the module); True if deferred.

    `conn` must be idle in autocommit (DROP INDEX CONCURRENTLY runs outside a transaction); otherwise nothing
    happens and the vectors go in with the index live, as always.
    """
    settings = get_settings()
    if not applies() or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    row = fetch_one(conn, """
        SELECT s.last_synced_at IS NULL AS first_sync,
               EXISTS (SELECT 1 FROM vector_index_deferrals v WHERE v.source_id = s.id) AS deferred,
               (SELECT count(*) FROM documents d WHERE d.source_id = s.id AND d.sync_generation = %(gen)s) AS pages,
               (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'chunks'::regclass) AS table_rows
        FROM sources s WHERE s.id = %(src)s AND s.sync_generation = %(gen)s""", {"src": source_id, "gen": generation})
    if row is None or not row["first_sync"] or row["pages"] < settings.ingest_bulk_pages:
        return False
    if row["deferred"]:
        return True
    if row["table_rows"] > row["pages"] * BULK_ROWS_PER_PAGE:
        return False
    conn.execute("INSERT INTO vector_index_deferrals (source_id, generation) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (source_id, generation))
    try:
        conn.execute("SET lock_timeout = '5s'")
        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX_NAME}")
    except psycopg.Error as exc:  # busy: the load goes in with the index live; the build finds it there
        log.warning("setting the vector index aside failed: %s", type(exc).__name__)
    finally:
        conn.execute("RESET lock_timeout")
    log.info("source %s: first sync of %d pages loads without the HNSW index", source_id, row["pages"])
    return True


def release(conn: psycopg.Connection[Row], source_id: str) -> None:
    """The sync of `source_id` ended: forget its deferral; the last one gone queues the build."""
    released = conn.execute("DELETE FROM vector_index_deferrals WHERE source_id = %s", (source_id,)).rowcount
    if released and not _active(conn):
        queue_build(f"after-{source_id}")


def queue_build(tag: str) -> None:
    from shared.core.queue import publish

    publish("build_vector_index", {"cron": "vector_index"}, dedup_id=f"vector-index-{tag}", retries=2)


def index_state(conn: psycopg.Connection[Row]) -> str:
    """'valid', 'invalid' (a concurrent build that died or still runs) or 'missing'."""
    row = fetch_one(conn, """SELECT i.indisvalid FROM pg_index i
                             WHERE i.indexrelid = to_regclass(%s)""", (INDEX_NAME,))
    return "missing" if row is None else ("valid" if row["indisvalid"] else "invalid")


def sweep(conn: psycopg.Connection[Row]) -> str | None:
    """The hourly check: forget stale deferrals; queue the build when none is active and the index is not
    there (or was left invalid). Returns what it did, if anything."""
    if not applies():
        return None
    conn.execute(f"DELETE FROM vector_index_deferrals WHERE created_at < now() - interval '{ABANDONED}'")
    if _active(conn) or index_state(conn) == "valid":
        return None
    queue_build(time.strftime("sweep%Y%m%d%H", time.gmtime()))
    return "queued"


def build(conn: psycopg.Connection[Row]) -> dict[str, Any]:
    """Build the HNSW index unless a deferring sync still loads or another build runs. Autocommit `conn`."""
    if not applies():
        return {"skipped": "no HNSW index on this deployment"}
    if _active(conn):
        return {"skipped": "a bulk load is still running; its end queues the build"}
    locked = fetch_one(conn, "SELECT pg_try_advisory_lock(%s) AS ok", (BUILD_LOCK,))
    if not locked or not locked["ok"]:
        return {"skipped": "another build is running"}
    try:
        state = index_state(conn)
        if state == "valid":
            return {"index": "present"}
        if state == "invalid":  # we hold the lock, so no build is running: a killed one left it
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX_NAME}")
        began = time.monotonic()
        # The graph built in memory (else pgvector builds far more slowly); no statement timeout on the build.
        conn.execute(f"SET maintenance_work_mem = '{int(get_settings().index_build_memory_mb)}MB'")
        conn.execute("SET statement_timeout = 0")
        conn.execute(HNSW_INDEX)
        seconds = round(time.monotonic() - began, 1)
        log.info("built the HNSW index in %.1f s", seconds)
        return {"index": "built", "seconds": seconds}
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK,))


def _active(conn: psycopg.Connection[Row]) -> bool:
    row = fetch_one(conn, f"""SELECT EXISTS (SELECT 1 FROM vector_index_deferrals
                                              WHERE created_at >= now() - interval '{ABANDONED}') AS active""")
    return bool(row and row["active"])
