"""The `crawl_source` job: start one sync of a source. Pasted text and files are indexed right here; a URL,
a sitemap or a site has its pages registered and one `ingest_pages` job queued per page (a site crawled by
Firecrawl instead gets an async crawl whose webhook and `poll_crawl` queue the pages)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.crawl import CrawlError, Page, firecrawl
from shared.crawl.ingest import process_page
from shared.crawl.pipeline import (
    DEFAULT_MAX_DEPTH,
    DISCOVERY_ATTEMPTS,
    fail_source,
    finalize,
    load_source,
    mark_incomplete,
    page_limit,
    publish_page,
    register_pages,
)
from shared.crawl.scope import Scope, normalize_url
from shared.db import Row, connect, fetch_one
from shared.jobs import JobPayload
from shared.queue import publish
from shared.settings import get_settings


class Payload(JobPayload):
    source_id: str
    generation: int


def run(payload: Payload) -> dict[str, Any]:
    source_id, generation = payload.source_id, payload.generation
    with connect() as conn:
        source = load_source(conn, source_id)
        if source is None or source["sync_generation"] != generation:
            return {"skipped": "the source was deleted or resynced"}
        if source["status"] in ("ready", "failed"):
            return {"skipped": f"this sync is already {source['status']}"}
        # A retry after a partial run goes through again: every step below is idempotent.
        attempt = fetch_one(conn, """
            UPDATE sources SET discovery_attempts = discovery_attempts + 1, updated_at = now(),
                   status = CASE WHEN status = 'queued' THEN 'crawling' ELSE status END
            WHERE id = %s AND sync_generation = %s RETURNING discovery_attempts""", (source_id, generation))
        if source["kind"] in ("text", "markdown", "file"):
            try:
                return _index_inline(conn, source, generation)
            except CrawlError as exc:
                if exc.retryable:
                    raise
                fail_source(conn, source_id, generation, f"{exc.code}: {exc.message}", transient=False)
                return {"failed": exc.code}
        try:
            if source["kind"] == "site" and firecrawl.enabled():
                return _start_firecrawl(conn, source, generation)
            return _discover(conn, source, generation)
        except CrawlError as exc:
            # The site (its sitemap, Firecrawl) may be back in a moment: QStash retries; after the last try
            # the sync fails, keeps every page and is retried on the schedule.
            if exc.retryable and attempt is not None and attempt["discovery_attempts"] < DISCOVERY_ATTEMPTS:
                raise
            fail_source(conn, source_id, generation, f"{exc.code}: {exc.message}", transient=exc.retryable)
            return {"failed": exc.code}


def _indexing(conn: Any, source: Row, generation: int) -> None:
    conn.execute("UPDATE sources SET status = 'indexing', updated_at = now() "
                 "WHERE id = %s AND sync_generation = %s AND status = 'crawling'", (source["id"], generation))


def _index_inline(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    """Pasted text and uploaded files: their content is in the source; one document, indexed now."""
    config = source["config"]
    url = f"upload://{source['id']}/{config.get('file_name') or 'text'}"
    register_pages(conn, source, generation, [url], include_pending=True)
    _indexing(conn, source, generation)
    page = Page(url=url, title=source["title"] or "", markdown=config.get("content") or "")
    return process_page(conn, source, generation, url, page=page)


def _discover(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    config = source["config"]
    start = normalize_url(source["url"])
    if source["kind"] == "sitemap":
        from shared.crawl.sitemap import read_sitemap

        scope = Scope(start, config.get("include_paths") or [], config.get("exclude_paths") or [])
        host = urlsplit(start).netloc
        listing = read_sitemap(start, limit=page_limit(source) * 4)
        if listing.problem:  # pages of a child sitemap that failed are not gone
            mark_incomplete(conn, source["id"], generation, listing.problem)
        # sitemaps.org: a sitemap lists pages of its own host only.
        from shared.crawl.fetch import allowed_urls

        urls = allowed_urls([u for u in listing.urls if urlsplit(u).netloc == host and scope.matches(u)])
    else:
        urls = [start]
    follow = source["kind"] == "site" and int(config.get("max_depth", DEFAULT_MAX_DEPTH)) > 0
    queued = register_pages(conn, source, generation, urls, include_pending=True)
    _indexing(conn, source, generation)
    for url in queued:
        publish_page(source, generation, url, follow=follow)
    if not queued:
        finalize(conn, source["id"], generation)
    return {"queued": len(queued)}


def _start_firecrawl(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    config = source["config"]
    crawl_id = source["crawl_id"]
    if source["status"] == "indexing" and not crawl_id:
        return {"skipped": "the crawl of this sync has ended"}
    if not crawl_id:  # a retried job must not start a second crawl
        crawl_id = firecrawl.start_crawl(
            url=source["url"], limit=page_limit(source), include=config.get("include_paths") or [],
            exclude=config.get("exclude_paths") or [], max_depth=int(config.get("max_depth", DEFAULT_MAX_DEPTH)),
            webhook_url=f"{get_settings().public_url.rstrip('/')}/api/webhooks/firecrawl",
            metadata={"source_id": source["id"], "workspace_id": source["workspace_id"],
                      "generation": str(generation)})
        claimed = conn.execute("""UPDATE sources SET crawl_id = %s, updated_at = now()
                                  WHERE id = %s AND sync_generation = %s AND crawl_id IS NULL
                                    AND status IN ('queued', 'crawling')""",
                               (crawl_id, source["id"], generation)).rowcount
        # Not claimed: a duplicate delivery started this sync's crawl meanwhile (maybe one that has already
        # ended: its crawl_id is cleared but the status moved on). One crawl per sync is enough.
        if not claimed:
            firecrawl.cancel(crawl_id)
            return {"skipped": "a duplicate delivery started the crawl"}
    publish("poll_crawl", {"workspace_id": source["workspace_id"], "source_id": source["id"],
                           "generation": generation, "crawl_id": crawl_id, "poll": 1},
            dedup_id=f"poll-{source['id']}-g{generation}-1", delay=firecrawl.POLL_DELAY_S)
    return {"crawl_id": crawl_id}
