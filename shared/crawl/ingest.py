"""One page through the pipeline: fetch (Firecrawl or the built-in fetcher) -> follow links -> index ->
counters; failures recorded on the page and raised while QStash should still retry."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from shared.crawl import CrawlError, Page, firecrawl
from shared.crawl.indexer import StaleDocument, index_document
from shared.crawl.pipeline import (
    DEFAULT_MAX_DEPTH,
    PAGE_ATTEMPTS,
    begin_attempt,
    finalize,
    load_source,
    mark_failed,
    publish_page,
    record_error,
    register_pages,
)
from shared.crawl.scope import Scope, normalize_url
from shared.db import Row
from shared.knowledge import source_kind
from shared.queue import publish

log = logging.getLogger("dialog_engine.ingest")

GONE = {"not_found"}  # proved gone (404/410): its old chunks go too (other failures keep the last good copy)


def fetch(kind_name: str, url: str) -> Page:
    """The page at `url` as its source kind fetches it."""
    kind = source_kind(kind_name)
    if kind.fetch is None:  # its content is stored with the source: nothing to fetch
        raise CrawlError("not_fetchable", f"{kind_name} sources have no pages to fetch.")
    return kind.fetch(url)


def process_page(conn: psycopg.Connection[Row], source: Row, generation: int, url: str, *, depth: int = 0,
                 follow: bool = False, page: Page | None = None) -> dict[str, Any]:
    """Ingest one page of one sync. Safe to repeat: a page already done in this sync is skipped."""
    doc = begin_attempt(conn, source["id"], generation, url)
    if doc is None:
        return {"url": url, "skipped": "already done or superseded"}
    web = source_kind(source["kind"]).web
    try:
        if page is None:
            page = fetch(source["kind"], url)
        if follow and depth < int(source["config"].get("max_depth", DEFAULT_MAX_DEPTH)) and page.links:
            _follow_links(conn, source, generation, page, depth, republish=doc["attempts"] > 1)
        title = page.title if web else (source["title"] or page.title)
        result = index_document(conn, doc, generation=generation, title=title, markdown=page.markdown,
                                url=url if web else None, language=source["language"])
    except StaleDocument:
        return {"url": url, "skipped": "superseded by a newer sync"}
    except Exception as exc:  # any failure is recorded on the page, then retried
        error = exc if isinstance(exc, CrawlError) else CrawlError(
            "indexing_failed", f"{type(exc).__name__}: {str(exc)[:300]}", retryable=True)
        # A duplicate racing a counted attempt (not counted itself) never fails the page for good.
        if error.retryable and (doc["attempts"] < PAGE_ATTEMPTS or not doc["counted"]):
            record_error(conn, doc, generation, f"{error.code}: {error.message} (attempt {doc['attempts']} "
                                                f"of {PAGE_ATTEMPTS}, will retry)")
            raise  # QStash retries the job
        log.info("page %s failed for good: %s", url, error.code)
        mark_failed(conn, doc, generation, error, drop_chunks=error.code in GONE)
        finalize(conn, source["id"], generation)
        return {"url": url, "failed": error.code}
    finalize(conn, source["id"], generation)
    return {"url": url, "chunks": result.chunks, "embedded": result.embedded, "removed": result.removed,
            "unchanged": result.unchanged}


def _follow_links(conn: psycopg.Connection[Row], source: Row, generation: int, page: Page, depth: int, *,
                  republish: bool) -> None:
    config = source["config"]
    scope = Scope(source["url"], config.get("include_paths") or [], config.get("exclude_paths") or [])
    from shared.crawl.fetch import allowed_urls

    links = allowed_urls([u for u in dict.fromkeys(normalize_url(link) for link in page.links) if scope.allows(u)])
    for url in register_pages(conn, source, generation, links, include_pending=republish):
        publish_page(source, generation, url, depth=depth + 1, follow=True)


def queue_firecrawl_pages(conn: psycopg.Connection[Row], source: Row, generation: int, documents: list[Any]) -> int:
    """Pages a Firecrawl crawl returned (webhook or status poll): register each and queue its job with the
    markdown inline; a page the site answered with a lasting error (404) is recorded as failed at once, one that
    answered a passing one (5xx, 429) is scraped again by its own job."""
    pages: list[Page] = []
    failed: list[tuple[str, CrawlError]] = []
    for document in documents:
        try:
            page = firecrawl.page_from_document(document)
        except CrawlError as exc:
            meta = document.get("metadata", {}) if isinstance(document, dict) else {}
            url = meta.get("sourceURL") or meta.get("url") or getattr(
                getattr(document, "metadata_typed", None), "source_url", None)
            if url:
                failed.append((normalize_url(url), exc))
            continue
        if page.url:
            page.url = normalize_url(page.url)
            pages.append(page)
    urls = [p.url for p in pages] + [u for u, _ in failed]
    to_queue = set(register_pages(conn, source, generation, urls, include_pending=True))
    for page in pages:
        if page.url in to_queue:
            publish_page(source, generation, page.url, page=page)
    for url, error in failed:
        if error.retryable and url in to_queue:  # a 5xx or 429 may pass: scrape the page again, with retries
            publish_page(source, generation, url)
            continue
        doc = begin_attempt(conn, source["id"], generation, url)
        if doc is not None:
            mark_failed(conn, doc, generation, error, drop_chunks=error.code in GONE)
    return len(to_queue)


def handle_firecrawl_event(conn: psycopg.Connection[Row], event: dict[str, Any]) -> dict[str, Any]:
    """A Firecrawl webhook event (signature already checked): page events queue their pages; completed and
    failed events queue the status poll. An event for a crawl that is not the source's current one is ignored."""
    meta: dict[str, Any] = event["metadata"] if isinstance(event.get("metadata"), dict) else {}
    crawl_id, kind = str(event.get("id") or ""), str(event.get("type") or "")
    source = load_source(conn, str(meta.get("source_id") or "")) if meta.get("source_id") else None
    # Acknowledge (2xx) what is not ours or no longer current, so Firecrawl stops retrying it.
    if source is None or not crawl_id or source["crawl_id"] != crawl_id \
            or source["workspace_id"] != meta.get("workspace_id"):
        return {"ignored": True}
    generation = source["sync_generation"]
    if kind == "crawl.page":
        data: list[Any] = event["data"] if isinstance(event.get("data"), list) else []
        return {"queued": queue_firecrawl_pages(conn, source, generation, data)}
    if kind in ("crawl.completed", "crawl.failed"):
        # The status poll reads the whole result, so a page event that never arrived is not lost.
        publish("poll_crawl", {"workspace_id": source["workspace_id"], "source_id": source["id"],
                               "generation": generation, "crawl_id": crawl_id, "poll": 1},
                dedup_id=f"poll-{source['id']}-g{generation}-{kind}")
    return {"ok": True}
