"""EMBEDDING_DIMENSIONS and the stored vectors: keep chunks.embedding's size equal to the setting.

`db migrate` sizes the column to the setting while it holds no vectors (a new database, a keyword-only or
Pinecone deployment) and refuses, naming the setting, when vectors of another size are stored. Changing
the size of stored vectors is `vectorize all --resize`: the old vectors are dropped (the column is dropped
and added again: no table rewrite), the HNSW index is built again and every chunk is embedded anew.
Ingestion and search check the same thing once per process, so a mismatch is a clear error, not
"different vector dimensions" from deep inside a SQL statement.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from shared.errors import AppError

HNSW_MAX_DIMENSIONS = 2000  # pgvector indexes `vector` columns up to this size; larger ones search exactly
HNSW_INDEX = ("CREATE INDEX CONCURRENTLY IF NOT EXISTS chunks_embedding ON chunks "
              "USING hnsw (embedding vector_cosine_ops)")

_verified: set[tuple[str, int]] = set()         # (connection dsn, dimensions)
_verified_urls: set[tuple[str, int]] = set()    # (DATABASE_URL, dimensions): the query path's check
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
    """Raise EmbeddingDimensionsMismatch unless chunks.embedding has `dimensions`; checked once per process
    and database (a catalog read), since only a migration or `vectorize all --resize` changes it."""
    key = (conn.info.dsn, dimensions)
    if key in _verified:
        return
    column = column_dimensions(conn)
    if column is not None and column != dimensions:
        raise column_mismatch(dimensions, column)
    with _verified_lock:
        _verified.add(key)


def verify_store(dimensions: int) -> None:
    """The query path's check, before a vector goes into a search: on pgvector once per process and database
    (it needs a connection of its own the first time); Pinecone names its own dimension errors."""
    from shared.settings import get_settings

    settings = get_settings()
    key = (settings.database_url, dimensions)
    if settings.resolved_vector_backend != "pgvector" or key in _verified_urls:
        return
    from shared.db import connect

    with connect() as conn:
        verify(conn, dimensions)
    with _verified_lock:
        _verified_urls.add(key)


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
    from shared.settings import get_settings

    return get_settings().embedding_model
