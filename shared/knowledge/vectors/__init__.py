"""Vector stores behind one small interface: Pinecone (production) or pgvector (VECTOR_BACKEND).

Postgres stays the source of truth: a vector's id is its chunk's id, and every vector can be rebuilt
from the chunks table (`python -m scripts vectorize all`). Ingestion inserts the chunk rows first,
then upserts their vectors (the pgvector backend writes into those rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from shared.core.settings import get_settings

Metadata = dict[str, Any]


@dataclass(frozen=True)
class VectorRecord:
    """One chunk's vector. metadata: {"assistant", "source", "document", "chunk"} (strings/numbers, no nulls)."""

    id: str
    values: list[float]
    metadata: Metadata = field(default_factory=dict)

    @classmethod
    def for_chunk(cls, chunk: dict[str, Any], values: list[float]) -> VectorRecord:
        """From a chunks row (id, assistant_id, source_id, document_id, ordinal) and its embedding."""
        return cls(id=chunk["id"], values=values, metadata={
            "assistant": chunk["assistant_id"], "source": chunk["source_id"],
            "document": chunk["document_id"], "chunk": int(chunk.get("ordinal") or 0)})


class VectorStore(Protocol):
    """What ingestion, retrieval and `vectorize` need. `conn` (optional) lets pgvector share a transaction."""

    name: str

    def upsert(self, workspace_id: str, records: list[VectorRecord], *, conn: Any = None) -> int:
        """Insert or replace vectors by id (idempotent); returns how many were written."""
        ...

    def delete(self, workspace_id: str, ids: list[str], *, conn: Any = None) -> None:
        """Remove vectors by id; unknown ids are ignored."""
        ...

    def delete_by_filter(self, workspace_id: str, *, assistant_id: str | None = None,
                         source_id: str | None = None, conn: Any = None) -> None:
        """Remove every vector of an assistant or a source (at least one must be given)."""
        ...

    def query(self, workspace_id: str, assistant_id: str, vector: list[float], top_k: int,
              *, conn: Any = None) -> list[tuple[str, float]]:
        """The nearest chunks of one assistant: [(chunk id, cosine similarity)], best first."""
        ...

    def health(self) -> str:
        """A one-line description, or an exception when the store is unreachable."""
        ...


def require_filter(assistant_id: str | None, source_id: str | None) -> None:
    # Guards against a None slipping through and wiping a whole workspace's vectors.
    if not (assistant_id or source_id):
        raise ValueError("delete_by_filter needs assistant_id or source_id")


@lru_cache
def get_vector_store() -> VectorStore:
    """The configured store: VECTOR_BACKEND, else Pinecone when PINECONE_API_KEY is set, else pgvector."""
    backend = get_settings().resolved_vector_backend
    if backend == "pgvector":
        from shared.knowledge.vectors.pgvector import PgVectorStore

        return PgVectorStore()
    if backend == "pinecone":
        from shared.knowledge.vectors.pinecone_store import PineconeStore

        return PineconeStore.from_settings()
    raise LookupError(f"unknown vector backend {backend!r} (VECTOR_BACKEND is pinecone or pgvector)")
