"""POST /api/webhooks/firecrawl: Firecrawl crawl events. Checked with X-Firecrawl-Signature when
FIRECRAWL_WEBHOOK_SECRET is set, and always matched to a source by the crawl id only Firecrawl and we know."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from shared.crawl.firecrawl import signature_valid
from shared.deps import Db
from shared.errors import BadRequest, Unauthorized
from shared.http import create_app
from shared.settings import get_settings

log = logging.getLogger("dialog_engine.webhooks")
app = create_app("webhooks", description="Callbacks from services we use (Firecrawl crawl events).",
                 max_body_bytes=20_000_000)  # a crawl.page event carries whole pages of markdown


@app.post("/api/webhooks/firecrawl", summary="Firecrawl crawl events: page, completed, failed")
async def firecrawl_event(request: Request, conn: Db) -> dict[str, Any]:
    raw = await request.body()  # the exact bytes Firecrawl signed
    secret = get_settings().firecrawl_webhook_secret
    if secret and not signature_valid(raw, request.headers.get("x-firecrawl-signature"), secret):
        raise Unauthorized("The X-Firecrawl-Signature is missing or wrong.", code="invalid_signature")
    try:
        event = json.loads(raw)
    except ValueError:
        raise BadRequest("The event is not JSON.", code="invalid_json") from None
    if not isinstance(event, dict):
        raise BadRequest("The event is not a JSON object.", code="invalid_event")
    return await run_in_threadpool(handle_event, conn, event)


def handle_event(conn: Any, event: dict[str, Any]) -> dict[str, Any]:
    from shared.crawl.ingest import queue_firecrawl_pages
    from shared.crawl.pipeline import load_source
    from shared.queue import publish

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


lambda_handler = Mangum(app)
