"""POST /api/jobs/{name}: QStash deliveries. Verify the signature, run each message id until it succeeds (a retry
after a failure or a killed attempt runs again; a duplicate of a succeeded one changes nothing), record it."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from functions import JOBS
from shared.core.errors import BadRequest, ServiceUnavailable
from shared.core.http import create_app, json_error
from shared.core.jobs import JobRunning, NonRetryable, find, run_job
from shared.core.queue import job_url, verify

log = logging.getLogger("dialog_engine.jobs")
app = create_app("jobs", description="QStash callbacks that run functions/{name}.run(payload).")


@app.post("/api/jobs/{name}", summary="Run one queued job (QStash signs the call)")
async def run(name: str, request: Request) -> JSONResponse:
    raw = await request.body()  # the exact bytes QStash signed
    # Verify before anything else: an unsigned call runs nothing and learns nothing.
    verify(request.headers.get("upstash-signature"), raw, job_url(name))
    find(JOBS, name)  # unknown job -> 404 (a typo in a publish call must not be retried forever)
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        return _not_retryable("invalid_json", "The job payload is not JSON.")
    retried_header = request.headers.get("upstash-retried", "0")
    retried = int(retried_header) if retried_header.isdigit() else 0
    try:
        outcome = await run_in_threadpool(run_job, JOBS, name, payload,
                                          request.headers.get("upstash-message-id"), retried)
    except NonRetryable as exc:
        return _not_retryable(exc.code, exc.message, exc.details)
    except JobRunning as exc:  # another attempt holds the lease: come back after it (never a 2xx, see shared/core/jobs)
        return json_error(exc.status, exc.code, exc.message, headers=exc.headers)
    except BadRequest as exc:
        return _not_retryable(exc.code, exc.message)
    except ServiceUnavailable as exc:  # the database (or a service the body needs) is down or busy: come back
        log.warning("job %s attempt %s: %s", name, retried + 1, exc.code)
        return json_error(exc.status, exc.code, exc.message, headers=exc.headers)
    except Exception:
        log.exception("job %s failed (attempt %s)", name, retried + 1)
        return json_error(500, "job_failed", f"Job {name} failed; QStash will retry it.")
    return JSONResponse(outcome)


def _not_retryable(code: str, message: str, details: Any = None) -> JSONResponse:
    # 489 + this header is QStash's "do not retry": the message goes to the DLQ once instead of for a day.
    return json_error(489, code, message, details, headers={"Upstash-NonRetryable-Error": "true"})


lambda_handler = Mangum(app)
