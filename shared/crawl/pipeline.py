"""The ingestion pipeline's bookkeeping in Postgres: register pages, queue their jobs, record attempts and
failures, move a source's counters, finish a sync (remove vanished pages) and start the next one.

A sync is one `sync_generation` of a source. Every page seen in it carries that generation; jobs carry
it too and change nothing once a newer sync started. Page counters are recomputed from the documents table
and chunks_count moves by the rows each transaction really inserted or deleted, so a duplicated or
replayed job cannot make them drift.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import psycopg

from shared.crawl import CrawlError, Page
from shared.db import Row, fetch_all, fetch_one
from shared.queue import publish

log = logging.getLogger("dialog_engine.ingest")

PAGE_ATTEMPTS = 3                    # a page that fails this often is recorded as failed
MAX_INLINE_MARKDOWN = 400_000        # Firecrawl markdown carried in a job payload (QStash caps messages at 1 MB)
DEFAULT_PAGE_LIMIT = 50
DEFAULT_MAX_DEPTH = 3
SOURCE_COLUMNS = """id, workspace_id, assistant_id, kind, url, title, config, language, status, sync_generation,
                    crawl_id, sync_interval_hours"""


def load_source(conn: psycopg.Connection[Row], source_id: str) -> Row | None:
    return fetch_one(conn, f"SELECT {SOURCE_COLUMNS} FROM sources WHERE id = %s", (source_id,))


def page_limit(source: Row) -> int:
    return 1 if source["kind"] == "url" else int(source["config"].get("limit") or DEFAULT_PAGE_LIMIT)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def publish_page(source: Row, generation: int, url: str, *, depth: int = 0, follow: bool = False,
                 page: Page | None = None, tag: str = "") -> None:
    """Queue `ingest_pages` for one page; the dedup id makes a second publish of the same page a no-op."""
    payload: dict[str, Any] = {"workspace_id": source["workspace_id"], "source_id": source["id"],
                               "generation": generation, "url": url, "depth": depth, "follow": follow}
    dedup = f"page-{source['id']}-g{generation}-{_key(url)}{tag}"
    if page is not None and len(page.markdown.encode()) <= MAX_INLINE_MARKDOWN:
        payload.update(markdown=page.markdown, title=page.title)
        dedup += "-" + _key(page.title + "\0" + page.markdown)[:12]
    publish("ingest_pages", payload, dedup_id=dedup, retries=PAGE_ATTEMPTS - 1)


def publish_crawl(source: Row, generation: int, tag: str = "") -> str:
    return publish("crawl_source", {"workspace_id": source["workspace_id"], "source_id": source["id"],
                                    "generation": generation}, dedup_id=f"crawl-{source['id']}-g{generation}{tag}")


def register_pages(conn: psycopg.Connection[Row], source: Row, generation: int, urls: list[str], *,
                   include_pending: bool = False) -> list[str]:
    """Add pages to this sync (up to the page limit); returns the URLs whose jobs should be published:
    the newly added ones, plus those still pending when `include_pending` (a retried job republishes)."""
    with conn.transaction():
        # The row lock serialises discovery per source, so concurrent page jobs respect the limit.
        current = fetch_one(conn, "SELECT sync_generation FROM sources WHERE id = %s FOR UPDATE", (source["id"],))
        if current is None or current["sync_generation"] != generation:
            return []
        unique = list(dict.fromkeys(urls))
        present = {r["url"]: r["status"] for r in fetch_all(conn, """
            SELECT url, status FROM documents WHERE source_id = %s AND sync_generation = %s AND url = ANY(%s)""",
            (source["id"], generation, unique))}
        count = fetch_one(conn, "SELECT count(*) AS n FROM documents WHERE source_id = %s AND sync_generation = %s",
                          (source["id"], generation))
        room = max(0, page_limit(source) - (count["n"] if count else 0))
        new = [u for u in unique if u not in present][:room]
        if new:
            conn.execute("""
                INSERT INTO documents (workspace_id, assistant_id, source_id, url, sync_generation)
                SELECT %s, %s, %s, u, %s FROM unnest(%s::text[]) AS u
                ON CONFLICT (source_id, url) DO UPDATE
                    SET sync_generation = EXCLUDED.sync_generation, status = 'pending', error = NULL, attempts = 0,
                        updated_at = now()
                    WHERE documents.sync_generation < EXCLUDED.sync_generation""",
                (source["workspace_id"], source["assistant_id"], source["id"], generation, new))
    pending = [u for u, status in present.items() if status == "pending"] if include_pending else []
    return new + pending


def begin_attempt(conn: psycopg.Connection[Row], source_id: str, generation: int, url: str) -> Row | None:
    """Count an attempt at a pending page of this sync; None when it is done already (a duplicate) or stale."""
    return fetch_one(conn, """
        UPDATE documents SET attempts = attempts + 1, updated_at = now()
        WHERE source_id = %s AND url = %s AND sync_generation = %s AND status = 'pending'
        RETURNING id, workspace_id, assistant_id, source_id, url, content_hash, attempts""",
        (source_id, url, generation))


def record_error(conn: psycopg.Connection[Row], doc: Row, generation: int, message: str) -> None:
    """The latest error of a page that will be retried (it stays pending)."""
    conn.execute("UPDATE documents SET error = %s, updated_at = now() WHERE id = %s AND sync_generation = %s",
                 (message[:1000], doc["id"], generation))


def mark_failed(conn: psycopg.Connection[Row], doc: Row, generation: int, error: CrawlError, *,
                drop_chunks: bool) -> None:
    """A page that will not be retried; a page that is gone (404) also loses its chunks and vectors."""
    if drop_chunks:
        remove_chunks(conn, doc["workspace_id"], doc["source_id"], [doc["id"]])
    conn.execute("""UPDATE documents SET status = 'failed', error = %s, updated_at = now(),
                        content_hash = CASE WHEN %s THEN NULL ELSE content_hash END
                    WHERE id = %s AND sync_generation = %s""",
                 (f"{error.code}: {error.message}"[:1000], drop_chunks, doc["id"], generation))


def remove_chunks(conn: psycopg.Connection[Row], workspace_id: str, source_id: str, document_ids: list[str],
                  *, documents_too: bool = False) -> int:
    """Delete the vectors (when they live outside Postgres), then the chunk rows (and the documents)."""
    from shared.vectors import get_vector_store

    store = get_vector_store()
    if store.name != "pgvector":  # pgvector's vectors go with their rows
        ids = [r["id"] for r in fetch_all(conn, """SELECT id FROM chunks WHERE document_id = ANY(%s)
                                                   AND vector_id IS NOT NULL""", (document_ids,))]
        for start in range(0, len(ids), 1000):
            store.delete(workspace_id, ids[start:start + 1000])
    with conn.transaction():
        removed = conn.execute("DELETE FROM chunks WHERE document_id = ANY(%s) AND workspace_id = %s",
                               (document_ids, workspace_id)).rowcount
        if documents_too:
            conn.execute("DELETE FROM documents WHERE id = ANY(%s) AND workspace_id = %s", (document_ids, workspace_id))
        if removed:
            conn.execute("UPDATE sources SET chunks_count = greatest(0, chunks_count - %s) WHERE id = %s",
                         (removed, source_id))
    return removed


PROGRESS = """
    UPDATE sources s SET pages_found = d.found, pages_done = d.done, pages_failed = d.failed, updated_at = now()
    FROM (SELECT count(*) AS found, count(*) FILTER (WHERE status = 'ready') AS done,
                 count(*) FILTER (WHERE status = 'failed') AS failed,
                 count(*) FILTER (WHERE status = 'pending') AS pending
          FROM documents WHERE source_id = %(src)s AND sync_generation = %(gen)s) d
    WHERE s.id = %(src)s AND s.sync_generation = %(gen)s
    RETURNING s.workspace_id, s.status, s.crawl_id, d.found, d.done, d.failed, d.pending"""


def finalize(conn: psycopg.Connection[Row], source_id: str, generation: int) -> Row | None:
    """Move the counters; when no page of this sync is pending (and no Firecrawl crawl runs), remove the
    pages this sync did not see again and mark the source ready, or failed when no page worked."""
    from shared.embeddings import embeddings_enabled

    progress = fetch_one(conn, PROGRESS, {"src": source_id, "gen": generation})
    if progress is None or progress["pending"] or progress["crawl_id"] \
            or progress["status"] not in ("crawling", "indexing"):
        return progress
    vanished = [r["id"] for r in fetch_all(
        conn, "SELECT id FROM documents WHERE source_id = %s AND sync_generation < %s", (source_id, generation))]
    if vanished:
        remove_chunks(conn, progress["workspace_id"], source_id, vanished, documents_too=True)
        progress = fetch_one(conn, PROGRESS, {"src": source_id, "gen": generation}) or progress
    if progress["found"] == 0:
        status, error = "failed", "No pages were found to index."
    elif progress["done"] == 0:
        status, error = "failed", f"All {progress['failed']} pages failed; the pages list shows each error."
    else:
        status, error = "ready", None
    conn.execute("""
        UPDATE sources SET status = %s, error = %s, embeddings = %s, last_synced_at = now(), updated_at = now(),
               next_sync_at = CASE WHEN sync_interval_hours IS NULL THEN NULL
                                   ELSE now() + make_interval(hours => sync_interval_hours) END
        WHERE id = %s AND sync_generation = %s AND status IN ('crawling', 'indexing') AND crawl_id IS NULL""",
        (status, error, "ready" if embeddings_enabled() else "keyword_only", source_id, generation))
    return {**progress, "status": status}


def fail_source(conn: psycopg.Connection[Row], source_id: str, generation: int, error: str) -> None:
    """The whole sync failed before any page (a bad sitemap, Firecrawl refused the crawl)."""
    conn.execute("""UPDATE sources SET status = 'failed', error = %s, crawl_id = NULL, updated_at = now(),
                        next_sync_at = CASE WHEN sync_interval_hours IS NULL THEN NULL
                                            ELSE now() + make_interval(hours => sync_interval_hours) END
                    WHERE id = %s AND sync_generation = %s""", (error[:1000], source_id, generation))


def start_sync(conn: psycopg.Connection[Row], workspace_id: str, source_id: str) -> Row | None:
    """Begin a new sync of a source: bump its generation, reset the page counters, queue `crawl_source`.

    Jobs of the previous sync see the new generation and stop; a running Firecrawl crawl is cancelled.
    """
    row = fetch_one(conn, f"""
        WITH old AS (SELECT id, crawl_id FROM sources WHERE id = %s AND workspace_id = %s FOR UPDATE)
        UPDATE sources s SET sync_generation = s.sync_generation + 1, status = 'queued', error = NULL,
               crawl_id = NULL, pages_found = 0, pages_done = 0, pages_failed = 0, updated_at = now(),
               next_sync_at = CASE WHEN s.sync_interval_hours IS NULL THEN NULL
                                   ELSE now() + make_interval(hours => s.sync_interval_hours) END
        FROM old WHERE s.id = old.id
        RETURNING {', '.join('s.' + c.strip() for c in SOURCE_COLUMNS.split(','))}, old.crawl_id AS old_crawl_id""",
        (source_id, workspace_id))
    if row is None:
        return None
    if row["old_crawl_id"]:
        from shared.crawl import firecrawl

        firecrawl.cancel(row["old_crawl_id"])
    publish_crawl(row, row["sync_generation"])
    return row
