"""The `poll_crawl` job: read a Firecrawl crawl's status; while it runs, poll again later; once it ends,
queue every page it returned (pages the webhook already queued are deduplicated) and finish the sync. A crawl
that did not complete (failed, cancelled, still running after MAX_POLLS) removes no page it did not return."""

from __future__ import annotations

from typing import Any

from shared.crawl import CrawlError, firecrawl
from shared.crawl.ingest import queue_firecrawl_pages
from shared.crawl.pipeline import fail_source, finalize, load_source, mark_incomplete
from shared.db import connect
from shared.jobs import NonRetryable
from shared.queue import publish

MAX_POLLS = 240          # two hours at 30 s: then take what the crawl has and stop waiting
TERMINAL = {"completed", "failed", "cancelled"}


def run(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        source_id, generation = str(payload["source_id"]), int(payload["generation"])
        crawl_id, poll = str(payload["crawl_id"]), int(payload.get("poll") or 0)
    except (KeyError, TypeError, ValueError):
        raise NonRetryable("poll_crawl needs source_id, generation and crawl_id.") from None
    with connect() as conn:
        source = load_source(conn, source_id)
        if source is None or source["sync_generation"] != generation or source["crawl_id"] != crawl_id:
            return {"skipped": "the crawl is no longer current"}
        try:
            status, documents = firecrawl.crawl_status(crawl_id)
        except CrawlError as exc:
            if exc.retryable:
                raise
            fail_source(conn, source_id, generation, f"{exc.code}: {exc.message}")
            return {"failed": exc.code}
        if status not in TERMINAL and poll < MAX_POLLS:
            publish("poll_crawl", {**payload, "poll": poll + 1}, delay=firecrawl.POLL_DELAY_S,
                    dedup_id=f"poll-{source_id}-g{generation}-{poll + 1}")
            return {"status": status, "pages_so_far": len(documents)}
        if status not in TERMINAL:
            firecrawl.cancel(crawl_id)
            status = "timed_out"
        if status != "completed":  # a crawl that broke off proves nothing about the pages it did not return
            mark_incomplete(conn, source_id, generation, f"firecrawl_{status}: the Firecrawl crawl ended {status} "
                                                         f"after {len(documents)} pages")
        queued = queue_firecrawl_pages(conn, source, generation, documents)
        conn.execute("""UPDATE sources SET crawl_id = NULL, status = 'indexing', updated_at = now()
                        WHERE id = %s AND sync_generation = %s AND crawl_id = %s""", (source_id, generation, crawl_id))
        if status != "completed" and not documents:
            fail_source(conn, source_id, generation, f"firecrawl_{status}: Firecrawl reported the crawl {status}.")
            return {"status": status}
        finalize(conn, source_id, generation)
        return {"status": status, "pages": len(documents), "queued": queued}
