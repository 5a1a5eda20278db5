"""Vector stores behind one small interface: Pinecone (production) or pgvector (VECTOR_BACKEND)."""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from shared.settings import get_settings


class VectorStore(Protocol):
    name: str

    def health(self) -> str: ...


class PgVectorStore:
    """Vectors live in chunks.embedding (HNSW, cosine) in the same database."""

    name = "pgvector"

    def health(self) -> str:
        from shared.db import connect

        with connect() as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if not row:
            raise RuntimeError("the vector extension is not installed (run python -m scripts db migrate)")
        return f"pgvector {row['extversion']}"


@lru_cache
def get_vector_store() -> VectorStore:
    backend = get_settings().resolved_vector_backend
    if backend == "pgvector":
        return PgVectorStore()
    raise LookupError(f"vector backend {backend!r} is not available yet")
