"""The `ingest_pages` job: one page of one sync -> fetch (or the markdown Firecrawl sent) -> chunks and vectors.

Failures are recorded on the page and raised so QStash retries; after the last attempt the page is
marked failed and the job succeeds, so the sync can finish. A page already done in this sync is skipped.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.crawl import Page
from shared.crawl.ingest import process_page
from shared.crawl.pipeline import load_source
from shared.db import connect
from shared.jobs import JobPayload


class Payload(JobPayload):
    source_id: str
    generation: int
    url: str
    depth: int = Field(0, ge=0)
    follow: bool = False
    markdown: str | None = None  # the page as Firecrawl sent it (small pages only): nothing to fetch
    title: str | None = None


def run(payload: Payload) -> dict[str, Any]:
    page = None
    if payload.markdown is not None:
        page = Page(url=payload.url, title=payload.title or "", markdown=payload.markdown)
    with connect() as conn:
        source = load_source(conn, payload.source_id)
        if source is None or source["sync_generation"] != payload.generation:
            return {"skipped": "the source was deleted or resynced"}
        return process_page(conn, source, payload.generation, payload.url, depth=payload.depth,
                            follow=payload.follow, page=page)
