"""The `crawl_source` job: start one sync of a source, the way its kind says (shared.knowledge): pasted text
and files are indexed right here; a URL, a sitemap, a feed or a site has its pages registered and one
`ingest_pages` jobs queued, many pages each (a site crawled by Firecrawl instead gets an async crawl whose webhook and
`poll_crawl` queue the pages)."""

from __future__ import annotations

from typing import Any

from shared.core.db import connect, fetch_one
from shared.core.jobs import JobPayload
from shared.knowledge import source_kind
from shared.knowledge.crawl import CrawlError
from shared.knowledge.crawl.pipeline import DISCOVERY_ATTEMPTS, fail_source, load_source


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
        kind = source_kind(source["kind"])
        try:
            return kind.start(conn, source, generation)
        except CrawlError as exc:
            # Content stored with the source: QStash retries while the failure may pass. A web source (its
            # sitemap, feed, Firecrawl) may be back in a moment: QStash retries; after the last try the sync
            # fails, keeps every page and is retried on the schedule.
            attempts_left = attempt is not None and attempt["discovery_attempts"] < DISCOVERY_ATTEMPTS
            if exc.retryable and (kind.fetch is None or attempts_left):
                raise
            fail_source(conn, source_id, generation, f"{exc.code}: {exc.message}", transient=exc.retryable)
            return {"failed": exc.code}
