"""`vectorize all [--assistant ID] [--source ID]`: rebuild vectors from chunks, with progress, resumable.

Chunks are walked in id order and the last finished id is kept in Redis after every batch, so an
interrupted run started again with the same scope continues where it stopped (`--restart` ignores it).
`--queue` hands the work to the `vectorize` job instead (a batch per job, each queueing the next).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

CURSOR_TTL_S = 7 * 24 * 3600
HNSW_INDEX = "CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops)"


def register(groups: argparse._SubParsersAction) -> None:
    vec = groups.add_parser("vectorize", help="rebuild vectors from chunks").add_subparsers(dest="command",
                                                                                            required=True)
    every = vec.add_parser("all", help="embed and upsert the vectors of every chunk in scope (resumable)")
    every.add_argument("--workspace", help="only this workspace")
    every.add_argument("--assistant", help="only this assistant")
    every.add_argument("--source", help="only this source")
    every.add_argument("--batch", type=int, default=500, help="chunks per embedding/upsert batch (default 500)")
    every.add_argument("--missing", action="store_true", help="only chunks without a vector yet")
    every.add_argument("--restart", action="store_true", help="ignore a saved cursor and start from the beginning")
    every.add_argument("--queue", action="store_true", help="run as queued jobs instead of in this process")
    every.add_argument("--reindex", action="store_true",
                       help="pgvector: drop the HNSW index first and build it once at the end (much faster for a "
                            "large rebuild; vector search is exact and slow meanwhile)")
    every.add_argument("--resize", action="store_true",
                       help="pgvector: after EMBEDDING_DIMENSIONS changed, drop the stored vectors, size "
                            "chunks.embedding to the setting and embed every chunk again (index built at the end)")
    every.set_defaults(func=cmd_all)


def _dimension_problem() -> str | None:
    """Vectors of another size than EMBEDDING_DIMENSIONS in the store: said before a single chunk is embedded."""
    from shared.core.settings import get_settings
    from shared.knowledge.vectors import get_vector_store
    from shared.knowledge.vectors.dimensions import EmbeddingDimensionsMismatch, column_dimensions, column_mismatch

    try:
        store = get_vector_store()
        if store.name != "pgvector":
            store.health()  # Pinecone: compares the index's dimension with the setting
            return None
        from shared.core.db import connect

        setting = get_settings().embedding_dimensions
        with connect() as conn:
            column = column_dimensions(conn)
        if column is not None and column != setting:
            return column_mismatch(setting, column).message
    except EmbeddingDimensionsMismatch as exc:
        return exc.message
    return None


def _resize(args: argparse.Namespace) -> bool:
    """Size chunks.embedding to EMBEDDING_DIMENSIONS (dropping the stored vectors); False when it already is."""
    from shared.core.db import connect
    from shared.core.settings import get_settings
    from shared.knowledge.vectors.dimensions import column_dimensions, resize_column

    setting = get_settings().embedding_dimensions
    with connect() as conn:
        column = column_dimensions(conn)
        if column == setting:
            print(f"chunks.embedding already has {setting} dimensions (EMBEDDING_DIMENSIONS): no resize needed")
            return False
        print(f"resizing chunks.embedding from {column} to {setting} dimensions (EMBEDDING_DIMENSIONS); "
              "the stored vectors are dropped: search is keyword-only until this run ends", flush=True)
        resize_column(conn, setting, build_index=False)
    return True


def cursor_key(payload: dict[str, Any]) -> str:
    scope = ":".join(str(payload.get(k) or "all") for k in ("workspace_id", "assistant_id", "source_id"))
    return f"vectorize:cursor:{scope}:{'missing' if payload.get('missing') else 'every'}"


def cmd_all(args: argparse.Namespace) -> int:
    from functions.vectorize import MAX_BATCH, count, vectorize_batch
    from shared.core.db import connect, on
    from shared.core.settings import get_settings
    from shared.knowledge.embeddings import embeddings_enabled
    from shared.knowledge.vectors import get_vector_store
    from shared.knowledge.vectors.dimensions import HNSW_MAX_DIMENSIONS

    if not 1 <= args.batch <= MAX_BATCH:
        print(f"error: --batch must be from 1 to {MAX_BATCH}", file=sys.stderr)
        return 2
    if not embeddings_enabled():
        print("error: no embeddings API is configured (set OPENAI_API_KEY); search stays keyword-only",
              file=sys.stderr)
        return 1
    payload = {"workspace_id": args.workspace, "assistant_id": args.assistant, "source_id": args.source,
               "batch": args.batch, "missing": args.missing}
    if (args.reindex or args.resize) and (args.queue or get_vector_store().name != "pgvector"):
        flag = "--resize" if args.resize else "--reindex"
        hint = (" (Pinecone: create an index of EMBEDDING_DIMENSIONS with `pinecone create-index` under a new "
                "PINECONE_INDEX, then vectorize all)") if args.resize and get_vector_store().name != "pgvector" else ""
        print(f"error: {flag} is for an in-process run on the pgvector backend{hint}", file=sys.stderr)
        return 2
    if args.resize:
        resized = _resize(args)
        args.reindex = True  # HNSW inserts one at a time: build it once at the end instead
        if resized:
            args.restart = True
    elif problem := _dimension_problem():
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.queue:
        from shared.core.queue import publish

        message_id = publish("vectorize", payload)
        print(f"queued vectorize job {message_id}; each batch queues the next")
        return 0
    kv = _kv()
    key = cursor_key(payload)
    cursor = None if args.restart or kv is None else kv.get(key)
    with connect() as conn:
        done_before = 0 if cursor is None else _count_done(conn, payload, cursor)
        total = done_before + count(conn, payload, cursor)
        if cursor:
            print(f"resuming after chunk {cursor} ({done_before} of {total} already done; --restart to redo)")
        if args.reindex:
            # HNSW inserts one vector at a time (milliseconds each); one build at the end is far faster.
            conn.execute("DROP INDEX IF EXISTS chunks_embedding")
        done, started = done_before, time.monotonic()
        _progress(done, total, 0.0)
        while True:
            n, cursor = vectorize_batch(on(conn), payload, cursor, args.batch)
            done += n
            _progress(done, total, (done - done_before) / max(time.monotonic() - started, 1e-6))
            if cursor is None:
                break
            if kv is not None:
                kv.set(key, cursor, ttl=CURSOR_TTL_S)
        if args.reindex and get_settings().embedding_dimensions <= HNSW_MAX_DIMENSIONS:
            print("\nbuilding the HNSW index ...", flush=True)
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(HNSW_INDEX)
    if kv is not None:
        kv.delete(key)
    print(f"\nvectorized {done - done_before} chunks in {time.monotonic() - started:.1f} s")
    return 0


def _count_done(conn: Any, payload: dict[str, Any], cursor: str) -> int:
    from functions.vectorize import scope_sql

    where, params = scope_sql(payload)
    row = conn.execute(f"SELECT count(*) AS n FROM chunks WHERE {where} AND id <= %(after)s",
                       {**params, "after": cursor}).fetchone()
    return int(row["n"])


def _progress(done: int, total: int, rate: float) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    percent = 100 * done / total if total else 100.0
    sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} chunks "
                     f"({percent:5.1f}%) {rate:7.0f}/s")
    sys.stdout.flush()


def _kv() -> Any:
    try:
        from shared.core.kv import get_kv

        kv = get_kv()
        kv.ping()
        return kv
    except Exception as exc:  # without Redis the run still works, it just can't resume
        print(f"warning: Redis unavailable ({type(exc).__name__}); this run cannot be resumed", file=sys.stderr)
        return None
