"""Index documents: chunk each, keep the chunks that did not change, embed only the new ones, and write rows
and vectors so that a replay (or a duplicate delivery) changes nothing.

A page job hands in a batch of pages: their new chunks are embedded together (parallel requests, see
shared/knowledge/embeddings.py) and written in one transaction with one binary COPY; one page's failure (a stale
sync, a concurrent update, a row the database refuses) fails that page only.

Chunk ids are deterministic (document id + ordinal + content hash), so an unchanged chunk keeps its id,
its row and its vector. On pgvector the embedding is part of the COPY (one write per row instead of an
insert and then an update, in one transaction). On Pinecone the new vectors are upserted before the rows
are committed (a failed commit leaves only vectors that a retry overwrites) and vectors of removed chunks
are deleted after (a failure leaves only orphans, which retrieval ignores because it joins on chunk rows).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from shared.core.db import Connections, Row, fetch_all, fetch_one, on
from shared.i18n.language import AUTO, text_search_config
from shared.knowledge.chunking import CHUNKER_VERSION, chunk_markdown
from shared.knowledge.crawl import CrawlError

log = logging.getLogger("dialog_engine.ingest")

COPY_COLUMNS = ("id", "workspace_id", "assistant_id", "source_id", "document_id", "ordinal", "title", "heading_path",
                "url", "text", "token_count", "content_hash", "language", "vector_id")
# The columns' types for psycopg's binary COPY. regconfig's binary form is its oid's, so "oid" dumps it.
COPY_TYPES = ("text", "text", "text", "text", "text", "int4", "text", "text", "text", "text", "int4", "text", "oid",
              "text")
REQUEST_ERRORS = (400, 413, 422)  # the embeddings API refused what was sent: one page's text, not the API


class StaleDocument(Exception):
    """The document moved on to a newer sync (or was removed) while this job worked: drop the result."""


@dataclass
class IndexResult:
    chunks: int
    embedded: int
    removed: int
    unchanged: bool
    keyword_only: bool


@dataclass
class PageText:
    """What to index into one document row (as begin_attempt returned it)."""

    doc: Row
    title: str
    markdown: str
    url: str | None
    language: str


@dataclass
class _Plan:
    """One document's change: the rows it should have, what to insert and what to delete."""

    doc: Row
    title: str
    digest: str
    rows: list[Row]
    existing: dict[str, str | None]
    to_insert: list[Row]
    to_delete: list[str]
    vectors: list[list[float]] | None = None
    replaced: set[str] = field(default_factory=set)


def document_hash(title: str, markdown: str) -> str:
    return hashlib.sha256(f"{CHUNKER_VERSION}\0{title}\0{markdown}".encode()).hexdigest()


def chunk_id(document_id: str, ordinal: int, content_hash: str) -> str:
    return "chk_" + hashlib.sha256(f"{document_id}:{ordinal}:{content_hash}".encode()).hexdigest()[:32]


def index_document(conn: psycopg.Connection[Row], doc: Row, *, generation: int, title: str, markdown: str,
                   url: str | None, language: str) -> IndexResult:
    """Make the chunks (and vectors) of `doc` match `markdown`; StaleDocument if the sync moved on."""
    [outcome] = index_documents(on(conn), generation, [PageText(doc, title, markdown, url, language)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def index_documents(connections: Connections, generation: int,
                    pages: list[PageText]) -> list[IndexResult | Exception]:
    """Make each document's chunks (and vectors) match its page; per page its IndexResult or the exception that
    failed it (StaleDocument when its sync moved on). All pages belong to one source. A connection is taken
    for the plan and again for the write, none while the embeddings (or an outside vector store) answer."""
    from shared.knowledge.embeddings import embeddings_enabled

    outcomes: list[IndexResult | Exception | None] = [None] * len(pages)
    want_vectors = embeddings_enabled()
    existing: dict[str, dict[str, str | None]] = defaultdict(dict)
    plans: dict[int, _Plan] = {}
    with connections() as conn:
        for row in fetch_all(conn, "SELECT document_id, id, vector_id FROM chunks WHERE document_id = ANY(%s)",
                             ([p.doc["id"] for p in pages],)):
            existing[row["document_id"]][row["id"]] = row["vector_id"]
        for index, page in enumerate(pages):
            try:
                planned = _plan(conn, page, generation, existing[page.doc["id"]], want_vectors)
            except Exception as exc:  # this page only
                outcomes[index] = exc
                continue
            if isinstance(planned, IndexResult):
                outcomes[index] = planned
            else:
                plans[index] = planned
    for index, error in _embed(plans, want_vectors).items():
        outcomes[index] = error
        del plans[index]
    store = _store() if any(p.vectors or any(p.existing[i] for i in p.to_delete) for p in plans.values()) else None
    in_db = store is None or store.name == "pgvector"
    if not in_db and plans:
        try:
            _upsert_outside(store, list(plans.values()))
        except Exception as exc:  # the store is down: every page of the batch waits for the retry
            return [outcome if outcome is not None else exc for outcome in outcomes]
    with connections() as conn:
        writes = _write_all(conn, generation, plans, in_db=in_db)
    for index, written in writes.items():
        outcomes[index] = written if isinstance(written, Exception) else _result(plans[index], written)
        if not in_db and written is True:
            _delete_outside(store, plans[index])
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def _plan(conn: psycopg.Connection[Row], page: PageText, generation: int, existing: dict[str, str | None],
          want_vectors: bool) -> _Plan | IndexResult:
    """The change one page needs, or its result when there is nothing to do (unchanged since the last sync)."""
    doc = page.doc
    markdown = page.markdown.replace("\x00", "")
    title = (page.title or "").replace("\x00", "")[:300]
    digest = document_hash(title, markdown)
    if doc.get("content_hash") == digest:
        unchanged = fetch_one(conn, UNCHANGED, {"id": doc["id"], "gen": generation, "hash": digest,
                                                "empty": not markdown.strip(), "want": want_vectors})
        if unchanged is not None:
            return IndexResult(unchanged["chunks"], 0, 0, True, not want_vectors)
    language = page.language
    if language == AUTO:  # the source names no language: the page's own decides its stemming
        language = text_search_config(title, markdown)
    rows = [{"id": chunk_id(doc["id"], c.ordinal, c.content_hash), "workspace_id": doc["workspace_id"],
             "assistant_id": doc["assistant_id"], "source_id": doc["source_id"], "document_id": doc["id"],
             "ordinal": c.ordinal, "title": title, "heading_path": c.heading_path, "url": page.url, "text": c.text,
             "token_count": c.token_count, "content_hash": c.content_hash, "language": language}
            for c in chunk_markdown(markdown, title)]
    wanted = {r["id"] for r in rows}
    # New chunks, plus kept ones that still lack a vector now that embeddings are configured.
    to_insert = [r for r in rows if r["id"] not in existing or (want_vectors and not existing[r["id"]])]
    replaced = {r["id"] for r in to_insert}
    to_delete = [i for i in existing if i not in wanted or i in replaced]
    return _Plan(doc, title, digest, rows, dict(existing), to_insert, to_delete, replaced=replaced)


def _embed(plans: dict[int, _Plan], want_vectors: bool) -> dict[int, Exception]:
    """Embed the new chunks of every page in one go (the requests run in parallel); the pages that failed.

    When the API refuses the request itself (a 4xx about its input), each page is embedded alone so that
    only the page at fault fails; any other failure (an outage) fails them all, to be retried as a whole.
    """
    from shared.knowledge.embeddings import embed_texts
    from shared.knowledge.vectors.indexing import embedding_input

    todo = {i: p for i, p in plans.items() if p.to_insert}
    if not want_vectors or not todo:
        return {}
    try:
        vectors = embed_texts([embedding_input(r) for p in todo.values() for r in p.to_insert])
    except Exception as exc:
        if len(todo) == 1 or getattr(exc, "status_code", None) not in REQUEST_ERRORS:
            return dict.fromkeys(todo, exc)
        failed: dict[int, Exception] = {}
        for index, plan in todo.items():
            try:
                plan.vectors = embed_texts([embedding_input(r) for r in plan.to_insert])
            except Exception as alone:
                failed[index] = alone
        return failed
    assert vectors is not None
    start = 0
    for plan in todo.values():
        plan.vectors, start = vectors[start:start + len(plan.to_insert)], start + len(plan.to_insert)
    return {}


def _upsert_outside(store: Any, plans: list[_Plan]) -> None:
    from shared.knowledge.vectors import VectorRecord

    records = [VectorRecord.for_chunk(r, v) for p in plans if p.vectors
               for r, v in zip(p.to_insert, p.vectors, strict=True)]
    if records:
        store.upsert(plans[0].doc["workspace_id"], records)


def _delete_outside(store: Any, plan: _Plan) -> None:
    stale = [i for i in plan.to_delete if plan.existing[i] and i not in plan.replaced]
    if stale:
        try:
            store.delete(plan.doc["workspace_id"], stale)
        except Exception as exc:  # orphans are harmless: retrieval joins on chunk rows
            log.warning("deleting %d stale vectors failed: %s", len(stale), type(exc).__name__)


def _result(plan: _Plan, written: bool) -> IndexResult:
    if not written:  # a duplicate delivery did it meanwhile
        return IndexResult(len(plan.rows), 0, 0, True, plan.vectors is None)
    embedded = len(plan.to_insert) if plan.vectors else 0
    return IndexResult(len(plan.rows), embedded, len(plan.to_delete), False, plan.vectors is None)


# A page whose content did not change is done in one statement: it still has its chunks (unless it is
# empty) and, when embeddings are configured, every chunk has its vector.
UNCHANGED = """
    UPDATE documents d SET status = 'ready', error = NULL, attempt_started_at = NULL, updated_at = now()
    WHERE d.id = %(id)s AND d.sync_generation = %(gen)s AND d.content_hash = %(hash)s
      AND (%(empty)s OR EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id))
      AND NOT (%(want)s AND EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id AND c.vector_id IS NULL))
    RETURNING (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks"""


def _store() -> Any:
    from shared.knowledge.vectors import get_vector_store

    return get_vector_store()


def _write_all(conn: psycopg.Connection[Row], generation: int, plans: dict[int, _Plan], *,
               in_db: bool) -> dict[int, bool | Exception]:
    """Write every page in one transaction; if the database refuses it, each page alone, so that one page
    the database will not take fails alone. Per page: True written, False a duplicate did it, or the error."""
    if not plans:
        return {}
    try:
        return _write(conn, generation, plans, in_db=in_db)
    except psycopg.Error as exc:
        if len(plans) == 1:
            return dict.fromkeys(plans, exc)
        log.warning("writing %d pages at once failed (%s); writing them one by one", len(plans), type(exc).__name__)
    outcomes: dict[int, bool | Exception] = {}
    for index, plan in plans.items():
        try:
            outcomes.update(_write(conn, generation, {index: plan}, in_db=in_db))
        except psycopg.Error as exc:
            outcomes[index] = exc
    return outcomes


def _write(conn: psycopg.Connection[Row], generation: int, plans: dict[int, _Plan], *,
           in_db: bool) -> dict[int, bool | Exception]:
    """One transaction: each document is still ours (generation) and unchanged since we read it; swap rows.

    False for a page that a duplicate delivery of this job indexed with the same content while we worked.
    Documents are locked in id order (two batches sharing pages cannot deadlock). The chunk ids are read in a
    statement after the one taking the row locks: under READ COMMITTED each statement sees what committed
    before it began, so a job that waited for a lock sees the winner's rows.
    """
    ids = sorted(p.doc["id"] for p in plans.values())
    outcomes: dict[int, bool | Exception] = {}
    with conn.transaction():
        locked = {r["id"]: r for r in fetch_all(conn, """
            SELECT d.id, d.status, d.content_hash FROM documents d
            WHERE d.id = ANY(%s) AND d.sync_generation = %s ORDER BY d.id FOR UPDATE OF d""", (ids, generation))}
        current: dict[str, set[str]] = defaultdict(set)
        for chunk in fetch_all(conn, "SELECT document_id, id FROM chunks WHERE document_id = ANY(%s)", (ids,)):
            current[chunk["document_id"]].add(chunk["id"])
        writing: list[_Plan] = []
        for index, plan in plans.items():
            row = locked.get(plan.doc["id"])
            if row is None:
                outcomes[index] = StaleDocument(plan.doc["id"])
            elif current[plan.doc["id"]] != set(plan.existing):
                outcomes[index] = False if row["status"] == "ready" and row["content_hash"] == plan.digest else \
                    CrawlError("concurrent_update", "Another job changed this page meanwhile; trying again.",
                               retryable=True)
            else:
                outcomes[index] = True
                writing.append(plan)
        if writing:
            _swap_rows(conn, writing, in_db=in_db)
    return outcomes


def _swap_rows(conn: psycopg.Connection[Row], plans: list[_Plan], *, in_db: bool) -> None:
    """Delete the replaced chunks, COPY the new ones, mark the documents ready, move the source's counters."""
    to_delete = [i for p in plans for i in p.to_delete]
    to_insert = [r for p in plans for r in p.to_insert]
    with_vectors = any(p.vectors is not None for p in plans)
    delta = len(to_insert)
    if to_delete:
        delta -= conn.execute("DELETE FROM chunks WHERE id = ANY(%s)", (to_delete,)).rowcount
    if to_insert:
        vectors: list[Any] = []
        for plan in plans:
            vectors += plan.vectors if plan.vectors is not None else [None] * len(plan.to_insert)
        copy_chunks(conn, to_insert, vectors if with_vectors else None, with_embedding=in_db and with_vectors)
    conn.execute("""UPDATE documents d SET title = p.title, content_hash = p.digest, status = 'ready', error = NULL,
                                        attempt_started_at = NULL, updated_at = now()
                    FROM unnest(%s::text[], %s::text[], %s::text[]) AS p(id, title, digest) WHERE d.id = p.id""",
                 ([p.doc["id"] for p in plans], [p.title for p in plans], [p.digest for p in plans]))
    if delta or to_insert:
        # The source's chunk count moves by what really changed; it says whether vectors were made, and
        # which text search configurations its pages use (retrieval parses queries in each of them).
        # Last in the transaction: every page job of the source needs this row lock, so hold it briefly.
        languages = list(dict.fromkeys(r["language"] for r in to_insert))
        conn.execute("""UPDATE sources SET chunks_count = greatest(0, chunks_count + %(delta)s),
                            embeddings = CASE WHEN %(none)s THEN embeddings WHEN %(vectors)s THEN 'ready'
                                              ELSE 'keyword_only' END,
                            languages = languages || ARRAY(SELECT l FROM unnest(%(langs)s::text[]) WITH ORDINALITY
                                                           AS n(l, i) WHERE NOT l = ANY(languages) ORDER BY i)
                        WHERE id = %(src)s""",
                     {"delta": delta, "none": not to_insert, "vectors": with_vectors, "langs": languages,
                      "src": plans[0].doc["source_id"]})


def copy_chunks(conn: psycopg.Connection[Row], rows: list[Row], vectors: list[Any] | None, *,
                with_embedding: bool) -> int:
    """Insert chunk rows with one binary COPY (psycopg's `write_row`, pgvector's own dumper for the vectors):
    vector_id set where a vector exists, the embedding too on pgvector."""
    if not rows:
        return 0
    languages = list(dict.fromkeys(r["language"] for r in rows))
    oids = {r["name"]: r["oid"] for r in fetch_all(
        conn, "SELECT l AS name, l::regconfig::oid AS oid FROM unnest(%s::text[]) AS l", (languages,))}
    columns = COPY_COLUMNS + (("embedding",) if with_embedding else ())
    with conn.cursor() as cursor:
        types = list(COPY_TYPES)
        if with_embedding:
            from shared.knowledge.vectors.pgvector import vector_copy_type

            types.append(vector_copy_type(cursor))
        with cursor.copy(f"COPY chunks ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for index, row in enumerate(rows):
                vector = vectors[index] if vectors is not None else None
                values = (row["id"], row["workspace_id"], row["assistant_id"], row["source_id"], row["document_id"],
                          row["ordinal"], row["title"], row["heading_path"], row["url"], row["text"],
                          row["token_count"], row["content_hash"], oids[row["language"]],
                          row["id"] if vector is not None else None)
                copy.write_row((*values, vector) if with_embedding else values)
    return len(rows)
