"""Pages of one sync through the pipeline: fetch (Firecrawl or the built-in fetcher) -> follow links -> index ->
counters; failures recorded on each page, and raised while QStash should still retry.

A job carries many pages and works through them in waves of INGEST_WAVE_PAGES: the wave's pages are fetched
in parallel, their new chunks embedded together and written with one COPY. One page failing never loses
the others: each page's outcome is recorded on its own document row, and a job that still has a page to
retry raises after the rest are written, so QStash delivers it again (pages done by then are skipped).
A job that runs past INGEST_JOB_BUDGET_S starts no new wave: it queues the pages left as a job of their own.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from shared.core.db import Connections, Row, on
from shared.core.queue import publish
from shared.core.settings import get_settings
from shared.knowledge import source_kind
from shared.knowledge.crawl import CrawlError, Page, firecrawl
from shared.knowledge.crawl.indexer import PageText, StaleDocument, index_documents
from shared.knowledge.crawl.pipeline import (
    DEFAULT_MAX_DEPTH,
    PAGE_ATTEMPTS,
    PageRef,
    begin_attempt,
    begin_attempts,
    finalize,
    load_source,
    mark_failed,
    publish_pages,
    record_error,
    register_pages,
)
from shared.knowledge.crawl.scope import Scope, normalize_url

log = logging.getLogger("dialog_engine.ingest")

GONE = {"not_found"}  # proved gone (404/410): its old chunks go too (other failures keep the last good copy)
FETCH_CONCURRENCY = 4  # pages of one wave fetched at once (one site: polite, and QStash runs jobs in parallel)


def fetch(kind_name: str, url: str) -> Page:
    """The page at `url` as its source kind fetches it."""
    kind = source_kind(kind_name)
    if kind.fetch is None:  # its content is stored with the source: nothing to fetch
        raise CrawlError("not_fetchable", f"{kind_name} sources have no pages to fetch.")
    return kind.fetch(url)


def process_page(conn: psycopg.Connection[Row], source: Row, generation: int, url: str, *, depth: int = 0,
                 follow: bool = False, page: Page | None = None) -> dict[str, Any]:
    """Ingest one page of one sync. Safe to repeat: a page already done in this sync is skipped."""
    return ingest_pages(on(conn), source, generation, [PageRef(url, depth, follow, page)])["pages"][0]


def ingest_pages(connections: Connections, source: Row, generation: int, refs: list[PageRef]) -> dict[str, Any]:
    """Ingest pages of one sync, wave by wave, within INGEST_JOB_BUDGET_S; safe to repeat (pages done in this
    sync are skipped). Returns each page's outcome and how many pages were handed on to a new job.

    `connections` gives a connection for each database step (shared.core.db.Connections): none is held while
    pages are fetched or embedded, so the jobs a function instance runs at once need no more connections
    than they have statements running."""
    settings = get_settings()
    deadline = time.monotonic() + settings.ingest_job_budget_s
    refs = list({ref.url: ref for ref in refs}.values())
    results: list[dict[str, Any]] = []
    retry: list[Exception] = []
    done = 0
    while done < len(refs):
        if done and time.monotonic() > deadline:
            publish_pages(source, generation, refs[done:], tag="-rest")
            break
        wave = refs[done:done + settings.ingest_wave_pages]
        results += _wave(connections, source, generation, wave, retry)
        done += len(wave)
    with connections() as conn:
        finalize(conn, source["id"], generation)
    if retry:
        raise retry[0]  # QStash retries the job; the pages written meanwhile are skipped then
    return {"pages": results, "handed_on": len(refs) - done}


def _wave(connections: Connections, source: Row, generation: int, refs: list[PageRef],
          retry: list[Exception]) -> list[dict[str, Any]]:
    """One wave: attempts begun together, pages fetched in parallel, indexed together (one COPY)."""
    with connections() as conn:
        docs = begin_attempts(conn, source["id"], generation, [ref.url for ref in refs])
    results: dict[str, dict[str, Any]] = {ref.url: {"url": ref.url, "skipped": "already done or superseded"}
                                          for ref in refs if ref.url not in docs}
    active = [ref for ref in refs if ref.url in docs]
    fetched = _fetch_all(source["kind"], [ref.url for ref in active if ref.page is None])
    web = source_kind(source["kind"]).web
    texts: list[PageText] = []
    with connections() as conn:
        for ref in active:
            doc = docs[ref.url]
            page = ref.page or fetched[ref.url]
            try:
                if isinstance(page, Exception):
                    raise page
                if ref.follow and ref.depth < int(source["config"].get("max_depth", DEFAULT_MAX_DEPTH)) and page.links:
                    _follow_links(conn, source, generation, page, ref.depth, republish=doc["attempts"] > 1)
            except Exception as exc:
                results[ref.url] = _failed(conn, source, generation, doc, exc, retry)
                continue
            title = page.title if web else (source["title"] or page.title)
            texts.append(PageText(doc, title, page.markdown, ref.url if web else None, source["language"]))
    outcomes = index_documents(connections, generation, texts)
    with connections() as conn:
        for text, outcome in zip(texts, outcomes, strict=True):
            url = text.doc["url"]
            if isinstance(outcome, StaleDocument):
                results[url] = {"url": url, "skipped": "superseded by a newer sync"}
            elif isinstance(outcome, Exception):
                results[url] = _failed(conn, source, generation, text.doc, outcome, retry)
            else:
                results[url] = {"url": url, "chunks": outcome.chunks, "embedded": outcome.embedded,
                                "removed": outcome.removed, "unchanged": outcome.unchanged}
    return [results[ref.url] for ref in refs]


def _fetch_all(kind: str, urls: list[str]) -> dict[str, Page | Exception]:
    """Each page (or the error that stopped it), FETCH_CONCURRENCY at a time; each fetch has its own timeouts."""
    def one(url: str) -> Page | Exception:
        try:
            return fetch(kind, url)
        except Exception as exc:  # recorded on that page only
            return exc

    if len(urls) <= 1:
        return {url: one(url) for url in urls}
    with ThreadPoolExecutor(min(FETCH_CONCURRENCY, len(urls)), thread_name_prefix="fetch") as pool:
        return dict(zip(urls, pool.map(one, urls), strict=True))


def _failed(conn: psycopg.Connection[Row], source: Row, generation: int, doc: Row, exc: Exception,
            retry: list[Exception]) -> dict[str, Any]:
    """Record a page's failure: kept pending (and `exc` added to `retry`) while it has attempts left, else failed."""
    url = doc["url"]
    error = exc if isinstance(exc, CrawlError) else CrawlError(
        "indexing_failed", f"{type(exc).__name__}: {str(exc)[:300]}", retryable=True)
    # A duplicate racing a counted attempt (not counted itself) never fails the page for good.
    if error.retryable and (doc["attempts"] < PAGE_ATTEMPTS or not doc["counted"]):
        record_error(conn, doc, generation, f"{error.code}: {error.message} (attempt {doc['attempts']} "
                                            f"of {PAGE_ATTEMPTS}, will retry)")
        retry.append(exc)
        return {"url": url, "retrying": error.code}
    log.info("page %s failed for good: %s", url, error.code)
    mark_failed(conn, doc, generation, error, drop_chunks=error.code in GONE)
    return {"url": url, "failed": error.code}


def _follow_links(conn: psycopg.Connection[Row], source: Row, generation: int, page: Page, depth: int, *,
                  republish: bool) -> None:
    config = source["config"]
    scope = Scope(source["url"], config.get("include_paths") or [], config.get("exclude_paths") or [])
    from shared.knowledge.crawl.fetch import allowed_urls

    links = allowed_urls([u for u in dict.fromkeys(normalize_url(link) for link in page.links) if scope.allows(u)])
    new = register_pages(conn, source, generation, links, include_pending=republish)
    publish_pages(source, generation, [PageRef(url, depth + 1, follow=True) for url in new])


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
    from shared.knowledge.vectors.bulk_index import maybe_defer

    to_queue = set(register_pages(conn, source, generation, urls, include_pending=True))
    maybe_defer(conn, source["id"], generation)  # a large first sync: the HNSW index is built once, after it
    refs = [PageRef(page.url, page=page) for page in pages if page.url in to_queue]
    # A 5xx or 429 may pass: scrape the page again, with retries.
    refs += [PageRef(url) for url, error in failed if error.retryable and url in to_queue]
    publish_pages(source, generation, refs)
    for url, error in failed:
        if error.retryable and url in to_queue:
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
