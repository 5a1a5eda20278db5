"""GET /api/health: liveness and per-dependency status; 200 when db and redis answer, else 503 naming them."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from mangum import Mangum

from shared.health import run_checks
from shared.http import create_app

app = create_app("health", description="Liveness and dependency status. Needs no key.")


@app.get("/api/health", summary="Dependency status with latencies")
def health() -> JSONResponse:
    report = run_checks()
    return JSONResponse(report, status_code=503 if report["status"] == "down" else 200)


lambda_handler = Mangum(app)
