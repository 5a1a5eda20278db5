"""POST /api/webhooks/firecrawl: Firecrawl crawl events. Checked with X-Firecrawl-Signature when
FIRECRAWL_WEBHOOK_SECRET is set, and always matched to a source by the crawl id only Firecrawl and we know."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from shared.core.errors import BadRequest, Unauthorized
from shared.core.http import create_app
from shared.core.settings import get_settings
from shared.guard.deps import Db
from shared.knowledge.crawl.firecrawl import signature_valid

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
    from shared.knowledge.crawl.ingest import handle_firecrawl_event  # the ingestion pipeline loads on the first event

    return await run_in_threadpool(handle_firecrawl_event, conn, event)


lambda_handler = Mangum(app)
