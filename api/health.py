"""GET /api/health: liveness for anyone; the per-dependency report for operators.

Without credentials it answers {"status": "ok"} from the function alone: no database session, no Redis or
QStash call and no metrics write, so uptime pings and anonymous traffic cost nothing. With an admin key or
CRON_SECRET as 'Authorization: Bearer ...' it checks every dependency: 200 when db and redis answer,
else 503 naming them. `?deep=1` without credentials is a 401 rather than a silent liveness answer.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from mangum import Mangum

from shared.core.errors import Unauthorized
from shared.core.http import create_app
from shared.core.metrics import unmetered
from shared.guard.auth import bearer_token
from shared.ops.health import require_operator, run_checks

app = create_app("health", description="Liveness for anyone; dependency status with an admin key or CRON_SECRET.")


@app.get("/api/health", summary="Liveness; with an admin key or CRON_SECRET, dependency status with latencies")
def health(request: Request, deep: bool = False) -> JSONResponse:
    token = bearer_token(request)
    if not token:
        if deep:
            raise Unauthorized("Dependency checks need an admin key or CRON_SECRET as 'Authorization: Bearer ...'.",
                               code="missing_api_key")
        unmetered(request.scope)
        return JSONResponse({"status": "ok"})
    require_operator(token)
    report = run_checks()
    return JSONResponse(report, status_code=503 if report["status"] == "down" else 200)


lambda_handler = Mangum(app)
