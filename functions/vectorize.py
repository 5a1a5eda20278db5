"""The `vectorize` job: rebuild the vectors of one batch of chunks, then queue itself for the next batch.

Payload: {"workspace_id"?, "assistant_id"?, "source_id"?, "after"?: chunk id cursor, "batch"?: int,
"missing"?: bool (only chunks without a vector)}. Chunks are walked in id order, so a replayed delivery
redoes the same batch (same vector ids: nothing duplicates) and the chain resumes where it stopped.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pydantic import Field

from shared.core.db import Connections, Row, connect
from shared.core.jobs import JobPayload, NonRetryable
from shared.knowledge.vectors.indexing import CHUNK_COLUMNS, embed_chunks, write_vectors

DEFAULT_BATCH = 500
MAX_BATCH = 2000


def scope_sql(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and parameters selecting the chunks a run covers (cursor excluded)."""
    params = {"ws": payload.get("workspace_id"), "asst": payload.get("assistant_id"),
              "src": payload.get("source_id")}
    where = ("(%(ws)s::text IS NULL OR workspace_id = %(ws)s)"
             " AND (%(asst)s::text IS NULL OR assistant_id = %(asst)s)"
             " AND (%(src)s::text IS NULL OR source_id = %(src)s)")
    if payload.get("missing"):
        where += " AND vector_id IS NULL"
    return where, params


def count(conn: psycopg.Connection[Row], payload: dict[str, Any], after: str | None = None) -> int:
    where, params = scope_sql(payload)
    row = conn.execute(f"SELECT count(*) AS n FROM chunks WHERE {where} AND id > %(after)s",
                       {**params, "after": after or ""}).fetchone()
    return int(row["n"]) if row else 0


def vectorize_batch(connections: Connections, payload: dict[str, Any], after: str | None,
                    batch: int) -> tuple[int, str | None]:
    """Embed and upsert the next `batch` chunks after the cursor; returns (chunks done, next cursor or None).

    A connection for the read and one for the write (shared.core.db.Connections: the job's `connect`, the CLI's
    `on(conn)`), none held while the embeddings API answers: many deliveries at once on one instance must not
    fill its pool with connections that only wait (tests/faults)."""
    where, params = scope_sql(payload)
    with connections() as conn:
        rows = conn.execute(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE {where} AND id > %(after)s ORDER BY id "
                            "LIMIT %(limit)s", {**params, "after": after or "", "limit": batch}).fetchall()
    if not rows:
        return 0, None
    vectors = embed_chunks(rows)
    with connections() as conn:
        write_vectors(conn, rows, vectors)
    return len(rows), (rows[-1]["id"] if len(rows) == batch else None)


class Payload(JobPayload):
    assistant_id: str | None = None
    source_id: str | None = None
    after: str | None = None     # the chunk id cursor: walk on from the chunk after it
    batch: int = Field(DEFAULT_BATCH, ge=1, le=MAX_BATCH)
    missing: bool = False        # only chunks without a vector


def run(payload: Payload) -> dict[str, Any]:
    """One batch; publishes the next batch (deduplicated by cursor) until the scope is done."""
    from shared.knowledge.embeddings import embeddings_enabled

    if not embeddings_enabled():
        raise NonRetryable("No embeddings API is configured (set OPENAI_API_KEY): nothing to vectorize.")
    scope = payload.model_dump()
    done, cursor = vectorize_batch(connect, scope, payload.after, payload.batch)
    if cursor is not None:
        from shared.core.queue import publish

        key = "-".join(str(scope.get(k) or "all") for k in ("workspace_id", "assistant_id", "source_id"))
        publish("vectorize", {**scope, "after": cursor}, dedup_id=f"vectorize-{key}-{cursor}")
    return {"vectorized": done, "next": cursor, "done": cursor is None}
