"""Embed chunk rows and write their vectors: the one path ingestion and `vectorize` both use."""

from __future__ import annotations

from collections import defaultdict

import psycopg

from shared.core.db import Row
from shared.knowledge.vectors import VectorRecord, VectorStore, get_vector_store

# The columns index_chunks needs; select them with this list.
CHUNK_COLUMNS = "id, workspace_id, assistant_id, source_id, document_id, ordinal, title, heading_path, text"


def embedding_input(chunk: Row) -> str:
    """What gets embedded: title and heading path give a short chunk the context it lacks on its own."""
    head = " > ".join(part for part in (chunk.get("title"), chunk.get("heading_path")) if part)
    return f"{head}\n\n{chunk['text']}" if head else chunk["text"]


def index_chunks(conn: psycopg.Connection[Row], chunks: list[Row], store: VectorStore | None = None) -> int:
    """Embed `chunks` (rows with CHUNK_COLUMNS), upsert their vectors and set chunks.vector_id.

    Returns how many vectors were written; 0 when no embeddings API is configured (keyword search only).
    Safe to repeat: vector ids are chunk ids, so a replay overwrites the same vectors.
    """
    return write_vectors(conn, chunks, embed_chunks(chunks), store)


def embed_chunks(chunks: list[Row]) -> list[list[float]] | None:
    """The chunks' vectors, in order (None: no embeddings API). Needs no connection: a caller that can should
    hold none while the embeddings API answers."""
    from shared.knowledge.embeddings import embed_texts

    return embed_texts([embedding_input(c) for c in chunks]) if chunks else []


def write_vectors(conn: psycopg.Connection[Row], chunks: list[Row], vectors: list[list[float]] | None,
                  store: VectorStore | None = None) -> int:
    """Upsert the vectors embed_chunks gave for `chunks` and set chunks.vector_id; returns how many."""
    if not chunks or vectors is None:
        return 0
    store = store or get_vector_store()
    by_workspace: dict[str, list[VectorRecord]] = defaultdict(list)
    for chunk, values in zip(chunks, vectors, strict=True):
        by_workspace[chunk["workspace_id"]].append(VectorRecord.for_chunk(chunk, values))
    written = 0
    for workspace_id, records in by_workspace.items():
        written += store.upsert(workspace_id, records, conn=conn)
        if store.name != "pgvector":  # pgvector's upsert already set vector_id in the same statement
            conn.execute("UPDATE chunks SET vector_id = id WHERE id = ANY(%s) AND workspace_id = %s",
                         ([r.id for r in records], workspace_id))
    return written
