"""The `vectorize` job: rebuild the vectors of one batch of chunks, then queue itself for the next batch.

Payload: {"workspace_id"?, "assistant_id"?, "source_id"?, "after"?: chunk id cursor, "batch"?: int,
"missing"?: bool (only chunks without a vector)}. Chunks are walked in id order, so a replayed delivery
redoes the same batch (same vector ids: nothing duplicates) and the chain resumes where it stopped.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared.db import Row, connect
from shared.jobs import NonRetryable
from shared.vectors.indexing import CHUNK_COLUMNS, index_chunks

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


def vectorize_batch(conn: psycopg.Connection[Row], payload: dict[str, Any], after: str | None,
                    batch: int) -> tuple[int, str | None]:
    """Embed and upsert the next `batch` chunks after the cursor; returns (chunks done, next cursor or None)."""
    where, params = scope_sql(payload)
    rows = conn.execute(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE {where} AND id > %(after)s ORDER BY id "
                        "LIMIT %(limit)s", {**params, "after": after or "", "limit": batch}).fetchall()
    if not rows:
        return 0, None
    index_chunks(conn, rows)
    return len(rows), (rows[-1]["id"] if len(rows) == batch else None)


def validate(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise NonRetryable("The vectorize payload must be an object.")
    batch = payload.get("batch", DEFAULT_BATCH)
    if not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise NonRetryable(f"batch must be an integer from 1 to {MAX_BATCH}.")
    for key in ("workspace_id", "assistant_id", "source_id", "after"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise NonRetryable(f"{key} must be a string.")
    return payload


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """One batch; publishes the next batch (deduplicated by cursor) until the scope is done."""
    from shared.embeddings import embeddings_enabled

    payload = validate(payload)
    if not embeddings_enabled():
        raise NonRetryable("No embeddings API is configured (set OPENAI_API_KEY): nothing to vectorize.")
    batch = payload.get("batch", DEFAULT_BATCH)
    with connect() as conn:
        done, cursor = vectorize_batch(conn, payload, payload.get("after"), batch)
    if cursor is not None:
        from shared.queue import publish

        scope = "-".join(str(payload.get(k) or "all") for k in ("workspace_id", "assistant_id", "source_id"))
        publish("vectorize", {**payload, "after": cursor}, dedup_id=f"vectorize-{scope}-{cursor}")
    return {"vectorized": done, "next": cursor, "done": cursor is None}
