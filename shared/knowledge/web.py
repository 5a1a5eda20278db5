"""Web sources: one page (`url`), a site crawled by its links (`site`), the pages a sitemap lists (`sitemap`).

Their sync registers the pages and queues `ingest_pages` jobs, many pages each, which fetch them (Firecrawl when a
key is set, else the built-in fetcher). A site with a Firecrawl key is crawled by Firecrawl instead: its
webhook and the `poll_crawl` job queue the pages it returns.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.core.db import Row
from shared.core.queue import publish
from shared.core.settings import get_settings
from shared.knowledge import CRAWL_SETTINGS, SourceKind
from shared.knowledge.crawl import Page, firecrawl
from shared.knowledge.crawl.pipeline import (
    DEFAULT_MAX_DEPTH,
    PageRef,
    finalize,
    mark_incomplete,
    mark_indexing,
    publish_pages,
    register_pages,
)
from shared.knowledge.crawl.scope import Scope, normalize_url


def fetch(url: str) -> Page:
    """The page at `url` as markdown: Firecrawl when a key is set, else the built-in fetcher."""
    if firecrawl.enabled():
        return firecrawl.scrape(url)
    from shared.knowledge.crawl.fetch import fetch_page

    return fetch_page(url)


def queue_pages(conn: Any, source: Row, generation: int, urls: list[str], *, follow: bool = False) -> dict[str, Any]:
    """Register `urls` in this sync and queue their page jobs, many pages a job (a sync with none ends at once)."""
    from shared.knowledge.vectors.bulk_index import maybe_defer

    queued = register_pages(conn, source, generation, urls, include_pending=True)
    mark_indexing(conn, source["id"], generation)
    maybe_defer(conn, source["id"], generation)  # a large first sync: the HNSW index is built once, after it
    publish_pages(source, generation, [PageRef(url, follow=follow) for url in queued])
    if not queued:
        finalize(conn, source["id"], generation)
    return {"queued": len(queued)}


def scope(source: Row) -> Scope:
    config = source["config"]
    return Scope(normalize_url(source["url"]), config.get("include_paths") or [], config.get("exclude_paths") or [])


def start_page(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    return queue_pages(conn, source, generation, [normalize_url(source["url"])])


def start_site(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    if firecrawl.enabled():
        return start_firecrawl(conn, source, generation)
    follow = int(source["config"].get("max_depth", DEFAULT_MAX_DEPTH)) > 0
    return queue_pages(conn, source, generation, [normalize_url(source["url"])], follow=follow)


def start_sitemap(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    from shared.knowledge.crawl.fetch import allowed_urls
    from shared.knowledge.crawl.sitemap import read_sitemap

    start = normalize_url(source["url"])
    listing = read_sitemap(start, limit=SITEMAP.page_limit(source["config"]) * 4)
    if listing.problem:  # pages of a child sitemap that failed are not gone
        mark_incomplete(conn, source["id"], generation, listing.problem)
    # sitemaps.org: a sitemap lists pages of its own host only.
    host, within = urlsplit(start).netloc, scope(source)
    urls = allowed_urls([u for u in listing.urls if urlsplit(u).netloc == host and within.matches(u)])
    return queue_pages(conn, source, generation, urls)


def start_firecrawl(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    config = source["config"]
    crawl_id = source["crawl_id"]
    if source["status"] == "indexing" and not crawl_id:
        return {"skipped": "the crawl of this sync has ended"}
    if not crawl_id:  # a retried job must not start a second crawl
        crawl_id = firecrawl.start_crawl(
            url=source["url"], limit=SITE.page_limit(config), include=config.get("include_paths") or [],
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


URL = SourceKind("url", "One web page.", "url", start_page, fetch, single_page=True)
SITE = SourceKind("site", "A site crawled from the url by its links (max_depth, limit, include/exclude paths).",
                  "url", start_site, fetch, settings=CRAWL_SETTINGS, link_crawl=True)
SITEMAP = SourceKind("sitemap", "The pages a sitemap at the url lists (limit, include/exclude paths).", "url",
                     start_sitemap, fetch, settings=("limit", "include_paths", "exclude_paths"))
KINDS = (URL, SITE, SITEMAP)
