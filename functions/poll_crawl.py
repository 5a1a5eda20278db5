"""The `poll_crawl` job: read a Firecrawl crawl's status; while it runs, poll again later; once it ends,
queue every page it returned (pages the webhook already queued are deduplicated) and finish the sync. A crawl
that did not complete (failed, cancelled, still running after MAX_POLLS) removes no page it did not return."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.core.db import connect
from shared.core.jobs import JobPayload
from shared.core.queue import publish
from shared.knowledge.crawl import CrawlError, firecrawl
from shared.knowledge.crawl.ingest import queue_firecrawl_pages
from shared.knowledge.crawl.pipeline import fail_source, finalize, load_source, mark_incomplete

MAX_POLLS = 240          # two hours at 30 s: then take what the crawl has and stop waiting
TERMINAL = {"completed", "failed", "cancelled"}


class Payload(JobPayload):
    source_id: str
    generation: int
    crawl_id: str
    poll: int = Field(0, ge=0)


def run(payload: Payload) -> dict[str, Any]:
    source_id, generation, crawl_id, poll = payload.source_id, payload.generation, payload.crawl_id, payload.poll
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
            publish("poll_crawl", {**payload.model_dump(), "poll": poll + 1}, delay=firecrawl.POLL_DELAY_S,
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
