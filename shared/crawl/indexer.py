"""Index one document: chunk it, keep the chunks that did not change, embed only the new ones, and write
rows and vectors so that a replay (or a duplicate delivery) changes nothing.

Chunk ids are deterministic (document id + ordinal + content hash), so an unchanged chunk keeps its id,
its row and its vector. Rows go in with one binary COPY. On pgvector the embedding is part of that same
COPY (one write per row instead of an insert and then an update, in one transaction). On Pinecone the
new vectors are upserted before the rows are committed (a failed commit leaves only vectors that a
retry overwrites) and vectors of removed chunks are deleted after (a failure leaves only orphans,
which retrieval ignores because it joins on chunk rows).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.chunking import CHUNKER_VERSION, chunk_markdown
from shared.crawl import CrawlError
from shared.db import Row, fetch_all, fetch_one
from shared.language import AUTO, text_search_config

log = logging.getLogger("dialog_engine.ingest")

COPY_COLUMNS = ("id", "workspace_id", "assistant_id", "source_id", "document_id", "ordinal", "title", "heading_path",
                "url", "text", "token_count", "content_hash", "language", "vector_id")
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_NULL = struct.pack("!i", -1)


class StaleDocument(Exception):
    """The document moved on to a newer sync (or was removed) while this job worked: drop the result."""


@dataclass
class IndexResult:
    chunks: int
    embedded: int
    removed: int
    unchanged: bool
    keyword_only: bool


def document_hash(title: str, markdown: str) -> str:
    return hashlib.sha256(f"{CHUNKER_VERSION}\0{title}\0{markdown}".encode()).hexdigest()


def chunk_id(document_id: str, ordinal: int, content_hash: str) -> str:
    return "chk_" + hashlib.sha256(f"{document_id}:{ordinal}:{content_hash}".encode()).hexdigest()[:32]


def index_document(conn: psycopg.Connection[Row], doc: Row, *, generation: int, title: str, markdown: str,
                   url: str | None, language: str) -> IndexResult:
    """Make the chunks (and vectors) of `doc` match `markdown`; StaleDocument if the sync moved on."""
    from shared.embeddings import embed_texts, embeddings_enabled
    from shared.vectors.indexing import embedding_input

    markdown = markdown.replace("\x00", "")
    title = (title or "").replace("\x00", "")[:300]
    digest = document_hash(title, markdown)
    want_vectors = embeddings_enabled()
    if doc.get("content_hash") == digest:
        unchanged = fetch_one(conn, UNCHANGED, {"id": doc["id"], "gen": generation, "hash": digest,
                                                "empty": not markdown.strip(), "want": want_vectors})
        if unchanged is not None:
            return IndexResult(unchanged["chunks"], 0, 0, True, not want_vectors)
    if language == AUTO:  # the source names no language: the page's own decides its stemming
        language = text_search_config(title, markdown)
    existing = {r["id"]: r["vector_id"] for r in fetch_all(
        conn, "SELECT id, vector_id FROM chunks WHERE document_id = %s", (doc["id"],))}

    rows = [{"id": chunk_id(doc["id"], c.ordinal, c.content_hash), "workspace_id": doc["workspace_id"],
             "assistant_id": doc["assistant_id"], "source_id": doc["source_id"], "document_id": doc["id"],
             "ordinal": c.ordinal, "title": title, "heading_path": c.heading_path, "url": url, "text": c.text,
             "token_count": c.token_count, "content_hash": c.content_hash, "language": language}
            for c in chunk_markdown(markdown, title)]
    wanted = {r["id"] for r in rows}
    # New chunks, plus kept ones that still lack a vector now that embeddings are configured.
    to_insert = [r for r in rows if r["id"] not in existing or (want_vectors and not existing[r["id"]])]
    replaced = {r["id"] for r in to_insert}
    to_delete = [i for i in existing if i not in wanted or i in replaced]
    vectors = embed_texts([embedding_input(r) for r in to_insert]) if to_insert and want_vectors else None

    store = _store() if (vectors or any(existing[i] for i in to_delete)) else None
    in_db = store is None or store.name == "pgvector"
    if vectors and not in_db:
        from shared.vectors import VectorRecord

        assert store is not None
        records = [VectorRecord.for_chunk(r, v) for r, v in zip(to_insert, vectors, strict=True)]
        store.upsert(doc["workspace_id"], records)
    if not _write(conn, doc, generation, set(existing), to_delete, to_insert, vectors, title, digest, in_db=in_db):
        return IndexResult(len(rows), 0, 0, True, not want_vectors)  # a duplicate delivery did it meanwhile
    if not in_db:
        stale = [i for i in to_delete if existing[i] and i not in replaced]
        if stale:
            try:
                store.delete(doc["workspace_id"], stale)  # type: ignore[union-attr]
            except Exception as exc:  # orphans are harmless: retrieval joins on chunk rows
                log.warning("deleting %d stale vectors failed: %s", len(stale), type(exc).__name__)
    return IndexResult(len(rows), len(to_insert) if vectors else 0, len(to_delete), False, vectors is None)


# A page whose content did not change is done in one statement: it still has its chunks (unless it is
# empty) and, when embeddings are configured, every chunk has its vector.
UNCHANGED = """
    UPDATE documents d SET status = 'ready', error = NULL, attempt_started_at = NULL, updated_at = now()
    WHERE d.id = %(id)s AND d.sync_generation = %(gen)s AND d.content_hash = %(hash)s
      AND (%(empty)s OR EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id))
      AND NOT (%(want)s AND EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id AND c.vector_id IS NULL))
    RETURNING (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks"""


def _store() -> Any:
    from shared.vectors import get_vector_store

    return get_vector_store()


def _write(conn: psycopg.Connection[Row], doc: Row, generation: int, seen: set[str], to_delete: list[str],
           to_insert: list[Row], vectors: list[list[float]] | None, title: str, digest: str, *, in_db: bool) -> bool:
    """One transaction: the document is still ours (generation) and unchanged since we read it; swap rows.

    False when a duplicate delivery of this job indexed the same content while we worked (nothing to do).
    The chunk ids are read in a statement after the one taking the row lock: under READ COMMITTED each
    statement sees what committed before it began, so a job that waited for the lock sees the winner's rows.
    """
    with conn.transaction():
        locked = fetch_one(conn, """
            SELECT d.id, d.status, d.content_hash, %s::regconfig::oid AS language_oid
            FROM documents d WHERE d.id = %s AND d.sync_generation = %s FOR UPDATE OF d""",
            (to_insert[0]["language"] if to_insert else "simple", doc["id"], generation))
        if locked is None:
            raise StaleDocument(doc["id"])
        current = {r["id"] for r in fetch_all(conn, "SELECT id FROM chunks WHERE document_id = %s", (doc["id"],))}
        if current != seen:
            if locked["status"] == "ready" and locked["content_hash"] == digest:
                return False
            raise CrawlError("concurrent_update", "Another job changed this page meanwhile; trying again.",
                             retryable=True)
        delta = len(to_insert)
        if to_delete:
            delta -= conn.execute("DELETE FROM chunks WHERE id = ANY(%s)", (to_delete,)).rowcount
        if to_insert:
            copy_chunks(conn, to_insert, vectors, with_embedding=in_db and vectors is not None,
                        language_oid=locked["language_oid"])
        conn.execute("""UPDATE documents SET title = %s, content_hash = %s, status = 'ready', error = NULL,
                        attempt_started_at = NULL, updated_at = now() WHERE id = %s""", (title, digest, doc["id"]))
        if delta or to_insert:
            # The source's chunk count moves by what really changed; it says whether vectors were made, and
            # which text search configurations its pages use (retrieval parses queries in each of them).
            # Last in the transaction: every page job of the source needs this row lock, so hold it briefly.
            language = to_insert[0]["language"] if to_insert else None
            conn.execute("""UPDATE sources SET chunks_count = greatest(0, chunks_count + %s),
                                embeddings = CASE WHEN %s THEN embeddings WHEN %s THEN 'ready' ELSE 'keyword_only' END,
                                languages = CASE WHEN %s::text IS NULL OR %s = ANY(languages) THEN languages
                                                 ELSE languages || %s::text END
                            WHERE id = %s""",
                         (delta, not to_insert, vectors is not None, language, language, language, doc["source_id"]))
    return True


def copy_chunks(conn: psycopg.Connection[Row], rows: list[Row], vectors: list[list[float]] | None, *,
                with_embedding: bool, language_oid: int | None = None) -> int:
    """Insert chunk rows (all of one language) with one binary COPY: vector_id set when a vector exists,
    the embedding too on pgvector. `language_oid` saves a lookup when the caller has it."""
    if not rows:
        return 0
    if language_oid is None:
        found = fetch_one(conn, "SELECT %s::regconfig::oid AS oid", (rows[0]["language"],))
        assert found is not None
        language_oid = found["oid"]
    regconfig = struct.pack("!iI", 4, language_oid)
    columns = COPY_COLUMNS + (("embedding",) if with_embedding else ())
    with conn.cursor() as cursor, cursor.copy(f"COPY chunks ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(_HEADER)
        for index, row in enumerate(rows):
            vector = vectors[index] if vectors is not None else None
            fields = [_text(row["id"]), _text(row["workspace_id"]), _text(row["assistant_id"]),
                      _text(row["source_id"]), _text(row["document_id"]), _int4(row["ordinal"]), _text(row["title"]),
                      _text(row["heading_path"]), _text(row["url"]), _text(row["text"]), _int4(row["token_count"]),
                      _text(row["content_hash"]), regconfig,
                      _text(row["id"] if vector is not None else None)]
            if with_embedding:
                fields.append(_vector(vector))
            copy.write(struct.pack("!h", len(fields)) + b"".join(fields))
        copy.write(struct.pack("!h", -1))
    return len(rows)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode("utf-8")
    return struct.pack("!i", len(data)) + data


def _int4(value: int) -> bytes:
    return struct.pack("!ii", 4, value)


def _vector(values: list[float] | None) -> bytes:
    """pgvector's binary form: int16 dimensions, int16 unused, then float4s (big-endian)."""
    if values is None:
        return _NULL
    dim = len(values)
    return struct.pack(f"!iHH{dim}f", 4 + 4 * dim, dim, 0, *values)
