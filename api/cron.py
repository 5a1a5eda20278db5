"""GET /api/cron/{name}: Vercel Cron entry (Bearer CRON_SECRET); queues the matching job and returns at once."""

from __future__ import annotations

import hmac

from fastapi import Request
from mangum import Mangum

from shared.core.errors import NotFound, ServiceUnavailable, Unauthorized
from shared.core.http import create_app
from shared.core.queue import publish
from shared.core.settings import get_settings

app = create_app("cron", description="Scheduled entry points; each queues a job so the cron call stays short.")

# cron name -> job (functions/<job>.py). vercel.json's "crons" and `scripts queue init` use the same names.
CRON_JOBS = {"cleanup": "cleanup", "backup": "backup", "resync": "resync_due", "summaries": "refresh_summaries"}


@app.get("/api/cron/{name}", summary="Queue the scheduled job `name`")
def cron(name: str, request: Request) -> dict[str, str]:
    secret = get_settings().cron_secret
    if not secret:
        raise ServiceUnavailable("Set CRON_SECRET to enable cron routes.", code="cron_not_configured")
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {secret}".encode()):
        raise Unauthorized("Cron routes need 'Authorization: Bearer <CRON_SECRET>'.", code="invalid_cron_secret")
    if name not in CRON_JOBS:
        raise NotFound(f"No cron job named {name!r}.", code="unknown_cron")
    # One run per minute at most, even if Vercel delivers the cron twice.
    message_id = publish(CRON_JOBS[name], {"cron": name}, dedup_id=f"cron-{name}-{_minute()}")
    return {"queued": CRON_JOBS[name], "message_id": message_id}


def _minute() -> str:
    import time

    return time.strftime("%Y%m%d%H%M", time.gmtime())


lambda_handler = Mangum(app)
