"""The ingestion pipeline's bookkeeping in Postgres: register pages, queue their jobs, record attempts and
failures, move a source's counters, finish a sync (remove pages proved gone) and start the next one.

A sync is one `sync_generation` of a source. Every page seen in it carries that generation; jobs carry
it too and change nothing once a newer sync started. Page counters are recomputed from the documents table
and chunks_count moves by the rows each transaction really inserted or deleted, so a duplicated or
replayed job cannot make them drift.

A sync removes a page only when it proved the page gone: the page answered 404/410, or the sync read the
whole listing (every sitemap, a Firecrawl crawl that completed, a link crawl in which every page answered)
and the page was not in it. A sync cut short (the site down, timing out, behind 401/403, half up, a child
sitemap failing, a crawl that broke off, a sync abandoned by its jobs) keeps every page it did not reach with
its chunks and vectors, says so on the source (error, pages_kept) and is retried on the schedule.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.queue import publish
from shared.core.settings import get_settings
from shared.knowledge.crawl import CrawlError, Page

log = logging.getLogger("dialog_engine.ingest")

PAGE_ATTEMPTS = 3                    # a page that fails this often is recorded as failed
DISCOVERY_ATTEMPTS = 3               # crawl_source tries this often to read a sitemap or start a crawl
ATTEMPT_LEASE = "5 minutes"          # a page attempt older than this died with its function (jobs' maxDuration)
RETRY_MAX_HOURS = 24                 # an incomplete sync is retried after 1, 2, 4 ... hours, at most this
UNSCHEDULED_RETRIES = 3              # sources without a schedule retry an incomplete sync this often
# Page failures that answer for the page itself (gone, or never readable). Any other failure (5xx, timeout,
# 401/403, robots.txt) may hide the pages linked from that page, so a link crawl with one cannot prove
# that the pages it did not reach are gone.
CONCLUSIVE_FAILURES = ("not_found", "unsupported_content_type", "too_large", "too_many_redirects",
                       "unreadable_page", "unreadable_file", "empty_file", "unsupported_file_type")
MAX_INLINE_MARKDOWN = 400_000        # Firecrawl markdown carried in a job payload (QStash caps messages at 1 MB)
MAX_JOB_BYTES = 900_000              # all the markdown one page job carries
DEFAULT_MAX_DEPTH = 3
SOURCE_COLUMNS = """id, workspace_id, assistant_id, kind, url, title, config, language, status, sync_generation,
                    crawl_id, sync_interval_hours"""


def load_source(conn: psycopg.Connection[Row], source_id: str) -> Row | None:
    return fetch_one(conn, f"SELECT {SOURCE_COLUMNS} FROM sources WHERE id = %s", (source_id,))


def page_limit(source: Row) -> int:
    from shared.knowledge import source_kind

    return source_kind(source["kind"]).page_limit(source["config"])


def mark_indexing(conn: psycopg.Connection[Row], source_id: str, generation: int) -> None:
    """The sync's pages are registered: it moves from crawling to indexing."""
    conn.execute("UPDATE sources SET status = 'indexing', updated_at = now() "
                 "WHERE id = %s AND sync_generation = %s AND status = 'crawling'", (source_id, generation))


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class PageRef:
    """One page for an `ingest_pages` job: its URL, its depth in a link crawl, whether to follow its links, and
    its content when Firecrawl sent it (nothing to fetch then)."""

    url: str
    depth: int = 0
    follow: bool = False
    page: Page | None = None

    def payload(self) -> dict[str, Any]:
        item: dict[str, Any] = {"url": self.url, "depth": self.depth, "follow": self.follow}
        if self.page is not None and len(self.page.markdown.encode()) <= MAX_INLINE_MARKDOWN:
            item.update(markdown=self.page.markdown, title=self.page.title)
        return item


def publish_pages(source: Row, generation: int, refs: list[PageRef], *, tag: str = "") -> int:
    """Queue `ingest_pages` jobs for `refs`, INGEST_PAGES_PER_JOB pages a job (fewer when their markdown would
    pass MAX_JOB_BYTES); returns how many jobs. Each job's dedup id is made of its pages (and their content),
    so publishing the same pages again is a no-op."""
    per_job = get_settings().ingest_pages_per_job
    jobs: list[list[dict[str, Any]]] = []
    size = 0
    for ref in refs:
        item = ref.payload()
        cost = len(item.get("markdown") or "") + len(item.get("title") or "") + len(ref.url) + 100
        if not jobs or len(jobs[-1]) >= per_job or size + cost > MAX_JOB_BYTES:
            jobs.append([])
            size = 0
        jobs[-1].append(item)
        size += cost
    for items in jobs:
        publish_page_job(source, generation, items, tag=tag)
    return len(jobs)


def publish_page_job(source: Row, generation: int, items: list[dict[str, Any]], *, tag: str = "") -> None:
    """Queue one `ingest_pages` job for `items` (PageRef.payload() dicts)."""
    key = _key("\n".join(i["url"] + "\0" + (_key(i.get("title", "") + "\0" + i["markdown"]) if "markdown" in i else "")
                         for i in items))
    publish("ingest_pages", {"workspace_id": source["workspace_id"], "source_id": source["id"],
                             "generation": generation, "pages": items},
            dedup_id=f"pages-{source['id']}-g{generation}-{key}{tag}", retries=PAGE_ATTEMPTS - 1)


def publish_crawl(source: Row, generation: int, tag: str = "") -> str:
    return publish("crawl_source", {"workspace_id": source["workspace_id"], "source_id": source["id"],
                                    "generation": generation}, dedup_id=f"crawl-{source['id']}-g{generation}{tag}",
                   retries=DISCOVERY_ATTEMPTS - 1)


def register_pages(conn: psycopg.Connection[Row], source: Row, generation: int, urls: list[str], *,
                   include_pending: bool = False) -> list[str]:
    """Add pages to this sync (up to the page limit); returns the URLs whose jobs should be published:
    the newly added ones, plus those still pending when `include_pending` (a retried job republishes)."""
    with conn.transaction():
        # The row lock serialises discovery per source, so concurrent page jobs respect the limit. NO KEY UPDATE:
        # a page job writing chunks holds a key-share lock on this row (their foreign key) until it updates the
        # row's counters; FOR UPDATE would wait for that job and queue ahead of its update, a deadlock.
        current = fetch_one(conn, "SELECT sync_generation FROM sources WHERE id = %s FOR NO KEY UPDATE",
                            (source["id"],))
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
                        attempt_started_at = NULL, updated_at = now()
                    WHERE documents.sync_generation < EXCLUDED.sync_generation""",
                (source["workspace_id"], source["assistant_id"], source["id"], generation, new))
    pending = [u for u, status in present.items() if status == "pending"] if include_pending else []
    return new + pending


def begin_attempt(conn: psycopg.Connection[Row], source_id: str, generation: int, url: str) -> Row | None:
    """Start an attempt at a pending page of this sync; None when it is done already (a duplicate) or stale."""
    return begin_attempts(conn, source_id, generation, [url]).get(url)


def begin_attempts(conn: psycopg.Connection[Row], source_id: str, generation: int, urls: list[str]) -> dict[str, Row]:
    """Start an attempt at each pending page of `urls` in this sync: url -> its document row; the pages done
    already (a duplicate) or stale are left out.

    A delivery that arrives while another attempt at a page is in flight (a duplicate racing it) runs too,
    but is not counted (`counted` is false): duplicates never use up the page's PAGE_ATTEMPTS.
    """
    rows = fetch_all(conn, f"""
        WITH current AS (
            SELECT id, attempt_started_at IS NULL
                       OR attempt_started_at < now() - interval '{ATTEMPT_LEASE}' AS counted
            FROM documents WHERE source_id = %s AND url = ANY(%s) AND sync_generation = %s AND status = 'pending'
            ORDER BY id FOR UPDATE)
        UPDATE documents d SET attempts = d.attempts + current.counted::int, attempt_started_at = now(),
                               updated_at = now()
        FROM current WHERE d.id = current.id
        RETURNING d.id, d.workspace_id, d.assistant_id, d.source_id, d.url, d.content_hash, d.attempts,
                  current.counted""",
        (source_id, list(dict.fromkeys(urls)), generation))
    return {row["url"]: row for row in rows}


def record_error(conn: psycopg.Connection[Row], doc: Row, generation: int, message: str) -> None:
    """The latest error of a page that will be retried (it stays pending; the attempt is over)."""
    conn.execute("""UPDATE documents SET error = %s, attempt_started_at = NULL, updated_at = now()
                    WHERE id = %s AND sync_generation = %s AND status = 'pending'""",
                 (message[:1000], doc["id"], generation))


def mark_failed(conn: psycopg.Connection[Row], doc: Row, generation: int, error: CrawlError, *,
                drop_chunks: bool) -> None:
    """A page that will not be retried keeps its last good chunks; a page proved gone (404/410) loses them.
    Only a pending page: a duplicate failing late must not undo a copy that indexed the page."""
    failed = conn.execute("""UPDATE documents SET status = 'failed', error = %s, updated_at = now(),
                                 attempt_started_at = NULL,
                                 content_hash = CASE WHEN %s THEN NULL ELSE content_hash END
                             WHERE id = %s AND sync_generation = %s AND status = 'pending'""",
                          (f"{error.code}: {error.message}"[:1000], drop_chunks, doc["id"], generation)).rowcount
    if failed and drop_chunks:
        remove_chunks(conn, doc["workspace_id"], doc["source_id"], [doc["id"]])
        if doc.get("content_hash"):  # it was indexed before: this sync removed it
            conn.execute("UPDATE sources SET pages_removed = pages_removed + 1 WHERE id = %s AND sync_generation = %s",
                         (doc["source_id"], generation))


def mark_incomplete(conn: psycopg.Connection[Row], source_id: str, generation: int, reason: str) -> None:
    """This sync cannot see the whole source (the first reason stays): it will remove no page it did not reach."""
    conn.execute("""UPDATE sources SET incomplete_reason = coalesce(incomplete_reason, %s), updated_at = now()
                    WHERE id = %s AND sync_generation = %s""", (reason[:500], source_id, generation))


def remove_chunks(conn: psycopg.Connection[Row], workspace_id: str, source_id: str, document_ids: list[str],
                  *, documents_too: bool = False) -> int:
    """Delete the vectors (when they live outside Postgres), then the chunk rows (and the documents)."""
    from shared.knowledge.vectors import get_vector_store

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
    RETURNING s.workspace_id, s.assistant_id, s.status, s.crawl_id, d.found, d.done, d.failed, d.pending"""


# After a sync: an incomplete one is retried after 1, 2, 4 ... hours (never later than the source's own
# schedule); a complete one goes back to the schedule (none for a source without one).
NEXT_SYNC = f"""
    sync_retries = CASE WHEN %(retry)s THEN sync_retries + 1 ELSE 0 END,
    next_sync_at = CASE
        WHEN %(retry)s THEN now() + make_interval(hours => least(coalesce(sync_interval_hours, {RETRY_MAX_HOURS}),
                                                      {RETRY_MAX_HOURS}, 1 << least(sync_retries, 5)))
        WHEN sync_interval_hours IS NULL THEN NULL
        ELSE now() + make_interval(hours => sync_interval_hours) END"""

# Pages whose earlier content stays searchable though this sync did not read them.
KEPT = """
    SELECT count(*) AS n FROM documents d
    WHERE d.source_id = %(src)s AND NOT (d.sync_generation = %(gen)s AND d.status = 'ready')
      AND EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id)"""

# Pages of this sync that failed for a reason that says nothing about the pages linked from them.
UNREAD = """
    SELECT count(*) AS n, min(error) AS example FROM documents
    WHERE source_id = %(src)s AND sync_generation = %(gen)s AND status = 'failed'
      AND NOT split_part(coalesce(error, ''), ':', 1) = ANY(%(conclusive)s)"""


def _retry(source: Row, wanted: bool) -> bool:
    """Whether an incomplete sync of `source` is retried (one without a schedule of its own only a few times)."""
    return wanted and (source["sync_interval_hours"] is not None or source["sync_retries"] < UNSCHEDULED_RETRIES)


def _pages(n: int) -> str:
    return f"{n} page" if n == 1 else f"{n} pages"


def finalize(conn: psycopg.Connection[Row], source_id: str, generation: int) -> Row | None:
    """Move the counters; when no page of this sync is pending (and no Firecrawl crawl runs), finish it:
    remove the pages it proved gone, keep the rest, mark the source ready (or failed when no page worked)."""
    from shared.knowledge import source_kind
    from shared.knowledge.embeddings import embeddings_enabled

    progress = fetch_one(conn, PROGRESS, {"src": source_id, "gen": generation})
    if progress is None or progress["pending"] or progress["crawl_id"] \
            or progress["status"] not in ("crawling", "indexing"):
        return progress
    with conn.transaction():
        # Page jobs ending together all get here: the row lock lets one finish the sync, the others see it done.
        source = fetch_one(conn, """SELECT kind, status, crawl_id, incomplete_reason, sync_interval_hours,
                                           sync_retries FROM sources
                                    WHERE id = %s AND sync_generation = %s FOR NO KEY UPDATE""",
                             (source_id, generation))
        if source is None or source["crawl_id"] or source["status"] not in ("crawling", "indexing"):
            return progress
        progress = fetch_one(conn, PROGRESS, {"src": source_id, "gen": generation})
        if progress is None or progress["pending"]:
            return progress
        params = {"src": source_id, "gen": generation, "conclusive": list(CONCLUSIVE_FAILURES)}
        unread = fetch_one(conn, UNREAD, params) or {"n": 0, "example": None}
        reason = source["incomplete_reason"]
        if reason is None and progress["found"] == 0:
            reason = "no pages were found"
        if reason is None and unread["n"] and source_kind(source["kind"]).link_crawl:
            reason = f"{_pages(unread['n'])} could not be read, e.g. {(unread['example'] or 'no error')[:300]}"
        removed = 0
        if reason is None:  # the sync saw the whole source: what it did not see again is gone
            earlier = [r["id"] for r in fetch_all(conn, """SELECT id FROM documents
                                                           WHERE source_id = %s AND sync_generation < %s""",
                                                  (source_id, generation))]
            if earlier:
                remove_chunks(conn, progress["workspace_id"], source_id, earlier, documents_too=True)
                removed = len(earlier)
        kept_row = fetch_one(conn, KEPT, params)
        kept = kept_row["n"] if kept_row else 0
        retry = _retry(source, reason is not None or bool(unread["n"]))
        status, error = _outcome(progress, reason, kept, retry)
        conn.execute(f"""
            UPDATE sources SET status = %(status)s, error = %(error)s, embeddings = %(embeddings)s,
                   pages_kept = %(kept)s, pages_removed = pages_removed + %(removed)s,
                   last_synced_at = now(), updated_at = now(), {NEXT_SYNC}
            WHERE id = %(src)s AND sync_generation = %(gen)s""",
            {**params, "status": status, "error": error, "kept": kept, "removed": removed, "retry": retry,
             "embeddings": "ready" if embeddings_enabled() else "keyword_only"})
    _compact_term_stats(conn, progress)
    _release_index(conn, source_id)
    if status == "ready":
        _evaluate(conn, progress)
    return {**progress, "status": status}


def _evaluate(conn: psycopg.Connection[Row], progress: Row) -> None:
    """The assistant's evaluation sets that ask for it run after each finished sync (never fails the sync)."""
    from shared.evals.alerts import on_sync_finished

    on_sync_finished(conn, progress["workspace_id"], progress["assistant_id"])


def _release_index(conn: psycopg.Connection[Row], source_id: str) -> None:
    """A sync that set the HNSW index aside has ended: the index is built once no other such sync runs."""
    from shared.knowledge.vectors.bulk_index import release

    try:
        release(conn, source_id)
    except Exception as exc:  # the hourly sweep queues the build too
        log.warning("queueing the vector index build failed: %s", type(exc).__name__)


def _compact_term_stats(conn: psycopg.Connection[Row], progress: Row) -> None:
    """A finished sync folds the search statistics its page jobs appended (see shared/knowledge/term_stats.py)."""
    from shared.knowledge.term_stats import compact

    try:
        compact(conn, progress["workspace_id"], progress["assistant_id"])
    except psycopg.Error as exc:  # only keeps the ledger short; the daily cleanup tries again
        log.warning("compacting term statistics failed: %s", type(exc).__name__)


def _outcome(progress: Row, reason: str | None, kept: int, retry: bool) -> tuple[str, str | None]:
    """The source's status and error after a sync: what failed, what was kept, that a retry comes."""
    parts = []
    if progress["found"] == 0:
        parts.append("No pages were found to index.")
    elif progress["done"] == 0:
        parts.append(f"All {progress['failed']} pages failed; the pages list shows each error.")
    if reason is not None and reason != "no pages were found":
        parts.append(f"The sync could not read the whole source ({reason}).")
    if kept:
        parts.append(f"It kept {_pages(kept)} with their earlier content (only pages proved gone are removed).")
    if retry:
        parts.append("A retry is scheduled (next_sync_at).")
    status = "failed" if progress["done"] == 0 else "ready"
    return status, " ".join(parts) or None


def fail_source(conn: psycopg.Connection[Row], source_id: str, generation: int, error: str, *,
                transient: bool = True) -> None:
    """The whole sync failed before reading pages (the sitemap, Firecrawl): nothing is removed. It is retried
    on the schedule when the failure may pass, or when an earlier sync worked (its pages are kept)."""
    source = fetch_one(conn, """SELECT sync_interval_hours, sync_retries,
                                       (SELECT count(DISTINCT document_id) FROM chunks WHERE source_id = s.id) AS kept
                                FROM sources s WHERE id = %s AND sync_generation = %s""", (source_id, generation))
    if source is None:
        return
    kept = source["kept"]
    retry = _retry(source, transient or kept > 0)
    if kept:
        error += f" Nothing was removed: kept {_pages(kept)} with their earlier content."
    if retry:
        error += " A retry is scheduled (next_sync_at)."
    conn.execute(f"""UPDATE sources SET status = 'failed', error = %(error)s, crawl_id = NULL, updated_at = now(),
                            pages_kept = %(kept)s, {NEXT_SYNC}
                     WHERE id = %(src)s AND sync_generation = %(gen)s""",
                 {"error": error[:2000], "kept": kept, "retry": retry, "src": source_id, "gen": generation})
    _release_index(conn, source_id)


def start_sync(conn: psycopg.Connection[Row], workspace_id: str, source_id: str) -> Row | None:
    """Begin a new sync of a source: bump its generation, reset the page counters, queue `crawl_source`.

    Jobs of the previous sync see the new generation and stop; a running Firecrawl crawl is cancelled.
    """
    row = fetch_one(conn, f"""
        WITH old AS (SELECT id, crawl_id FROM sources WHERE id = %s AND workspace_id = %s FOR UPDATE)
        UPDATE sources s SET sync_generation = s.sync_generation + 1, status = 'queued', error = NULL,
               crawl_id = NULL, pages_found = 0, pages_done = 0, pages_failed = 0, pages_kept = 0,
               pages_removed = 0, incomplete_reason = NULL, discovery_attempts = 0, updated_at = now(),
               next_sync_at = CASE WHEN s.sync_interval_hours IS NULL THEN NULL
                                   ELSE now() + make_interval(hours => s.sync_interval_hours) END
        FROM old WHERE s.id = old.id
        RETURNING {', '.join('s.' + c.strip() for c in SOURCE_COLUMNS.split(','))}, old.crawl_id AS old_crawl_id""",
        (source_id, workspace_id))
    if row is None:
        return None
    if row["old_crawl_id"]:
        from shared.knowledge.crawl import firecrawl

        firecrawl.cancel(row["old_crawl_id"])
    publish_crawl(row, row["sync_generation"])
    return row
