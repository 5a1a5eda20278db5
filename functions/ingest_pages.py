"""The `ingest_pages` job: one page of one sync -> fetch (or the markdown Firecrawl sent) -> chunks and vectors.

Failures are recorded on the page and raised so QStash retries; after the last attempt the page is
marked failed and the job succeeds, so the sync can finish. A page already done in this sync is skipped.
"""

from __future__ import annotations

from typing import Any

from shared.crawl import Page
from shared.crawl.ingest import process_page
from shared.crawl.pipeline import load_source
from shared.db import connect
from shared.jobs import NonRetryable


def run(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        source_id, generation, url = str(payload["source_id"]), int(payload["generation"]), str(payload["url"])
        depth = int(payload.get("depth") or 0)
    except (KeyError, TypeError, ValueError):
        raise NonRetryable("ingest_pages needs source_id, generation and url.") from None
    page = None
    if isinstance(payload.get("markdown"), str):
        page = Page(url=url, title=str(payload.get("title") or ""), markdown=payload["markdown"])
    with connect() as conn:
        source = load_source(conn, source_id)
        if source is None or source["sync_generation"] != generation:
            return {"skipped": "the source was deleted or resynced"}
        return process_page(conn, source, generation, url, depth=depth, follow=bool(payload.get("follow")),
                            page=page)
