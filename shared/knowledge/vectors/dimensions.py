"""EMBEDDING_DIMENSIONS and the stored vectors: keep chunks.embedding's size equal to the setting.

`db migrate` sizes the column to the setting while it holds no vectors (a new database, a keyword-only or
Pinecone deployment) and refuses, naming the setting, when vectors of another size are stored. Changing
the size of stored vectors is `vectorize all --resize`: the old vectors are dropped (the column is dropped
and added again: no table rewrite), the HNSW index is built again and every chunk is embedded anew.
Ingestion and search check the same thing (a catalog read at most once a minute per process), so a
mismatch is a clear error, not "different vector dimensions" from deep inside a SQL statement.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from shared.core.errors import AppError

HNSW_MAX_DIMENSIONS = 2000  # pgvector indexes `vector` columns up to this size; larger ones search exactly
HNSW_INDEX = ("CREATE INDEX CONCURRENTLY IF NOT EXISTS chunks_embedding ON chunks "
              "USING hnsw (embedding vector_cosine_ops)")

# Checked sizes and until when: a resize by `vectorize all --resize` reaches running instances within a minute
# (they then answer from keywords with a named error instead of failing inside the search statement).
VERIFIED_TTL_S = 60.0
_verified: dict[tuple[str, int], float] = {}        # (connection dsn, dimensions) -> expiry
_verified_urls: dict[tuple[str, int], float] = {}   # (DATABASE_URL, dimensions) -> expiry: the query path's
_verified_lock = threading.Lock()


class EmbeddingDimensionsMismatch(AppError):
    """The vectors the engine stores or searches have another size than EMBEDDING_DIMENSIONS says."""

    status, code = 503, "embedding_dimensions_mismatch"


def resize_hint(stored: int) -> str:
    return (f"to change the size run `python -m scripts vectorize all --resize` (drops the stored vectors and "
            f"embeds every chunk again), or set EMBEDDING_DIMENSIONS back to {stored}")


def column_mismatch(setting: int, column: int) -> EmbeddingDimensionsMismatch:
    return EmbeddingDimensionsMismatch(
        f"EMBEDDING_DIMENSIONS is {setting} but the stored vectors (chunks.embedding) have {column} dimensions: "
        + resize_hint(column), details={"setting": setting, "stored": column})


def column_dimensions(conn: psycopg.Connection[Any]) -> int | None:
    """The declared size of chunks.embedding (None: no fixed size)."""
    row = conn.cursor(row_factory=tuple_row).execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding' "
        "AND NOT attisdropped").fetchone()
    return int(row[0]) if row and row[0] > 0 else None


def has_vectors(conn: psycopg.Connection[Any]) -> bool:
    row = conn.cursor(row_factory=tuple_row).execute(
        "SELECT EXISTS (SELECT 1 FROM chunks WHERE embedding IS NOT NULL)").fetchone()
    return bool(row and row[0])


def ensure_column(conn: psycopg.Connection[Any], dimensions: int) -> str | None:
    """Size chunks.embedding to `dimensions` when it holds no vectors (migrate); returns what it did, if anything.

    Raises EmbeddingDimensionsMismatch when vectors of another size are stored. `conn` is in autocommit.
    """
    column = column_dimensions(conn)
    if column == dimensions:
        return None
    if has_vectors(conn):
        raise column_mismatch(dimensions, column or 0)
    resize_column(conn, dimensions)
    return f"chunks.embedding resized to {dimensions} dimensions (EMBEDDING_DIMENSIONS)"


def resize_column(conn: psycopg.Connection[Any], dimensions: int, *, build_index: bool = True) -> None:
    """Drop every pgvector vector and give chunks.embedding `dimensions` (autocommit `conn`).

    DROP COLUMN and ADD COLUMN (nullable, no default) change only the catalog, so even a large table is not
    rewritten; chunks whose vector lived in the column lose their vector_id so `vectorize all --missing`
    finds them. The index is built CONCURRENTLY: ingestion keeps writing meanwhile.
    """
    with conn.transaction():
        conn.execute("UPDATE chunks SET vector_id = NULL WHERE embedding IS NOT NULL")
        conn.execute("ALTER TABLE chunks DROP COLUMN embedding")
        conn.execute(f"ALTER TABLE chunks ADD COLUMN embedding vector({int(dimensions)})")
    if build_index and dimensions <= HNSW_MAX_DIMENSIONS:
        conn.execute(HNSW_INDEX)
    forget_verified()


def verify(conn: psycopg.Connection[Any], dimensions: int) -> None:
    """Raise EmbeddingDimensionsMismatch unless chunks.embedding has `dimensions`; a catalog read at most once
    a minute per process and database, since only a migration or `vectorize all --resize` changes it."""
    key = (conn.info.dsn, dimensions)
    if _verified.get(key, 0.0) > time.monotonic():
        return
    column = column_dimensions(conn)
    if column is not None and column != dimensions:
        raise column_mismatch(dimensions, column)
    with _verified_lock:
        _verified[key] = time.monotonic() + VERIFIED_TTL_S


def verify_store(dimensions: int, never_wait: bool = False) -> None:
    """The query and ingestion paths' check, before anything is embedded: on pgvector at most once a minute per
    process and database (a connection of its own then); Pinecone's errors are named at upsert.

    `never_wait` (a chat turn's query embedding, whose turn already holds a connection and waits for it): only
    when the pool has a slot free right now (Pool.spare), else not this time. Waiting for a slot could wait on the turn
    itself (DB_POOL_SIZE=1, or every slot held by turns doing the same): the turn then lost its vector
    search to the embedding timeout."""
    from shared.core.settings import get_settings

    settings = get_settings()
    key = (settings.database_url, dimensions)
    if settings.resolved_vector_backend != "pgvector" or _verified_urls.get(key, 0.0) > time.monotonic():
        return
    from shared.core.db import connect, spare_connection

    with spare_connection() if never_wait else connect() as conn:
        if conn is None:
            return  # checked by a later query, or at ingestion; a mismatch meanwhile fails the search itself
        verify(conn, dimensions)
    with _verified_lock:
        _verified_urls[key] = time.monotonic() + VERIFIED_TTL_S


def verify_vector(values: list[float], dimensions: int) -> None:
    """An embeddings API that ignored `dimensions` (or a model with another size) is named, not stored."""
    if len(values) != dimensions:
        raise EmbeddingDimensionsMismatch(
            f"the embeddings API returned {len(values)}-dimension vectors but EMBEDDING_DIMENSIONS is "
            f"{dimensions}: set EMBEDDING_DIMENSIONS to a size the model ({_model()}) gives",
            details={"setting": dimensions, "returned": len(values)})


def forget_verified() -> None:
    with _verified_lock:
        _verified.clear()
        _verified_urls.clear()


def _model() -> str:
    from shared.core.settings import get_settings

    return get_settings().embedding_model
