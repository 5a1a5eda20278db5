"""GET /api/metrics: the workspace's performance metrics by name and time frame, aggregated per bucket.

A workspace sees only the points recorded for it (workspace_id = its id: its jobs, its caches, its chats).
Engine-wide points (http.*, db.slow_query_ms, anything recorded without a workspace) belong to the
operators and are read with `python -m scripts metrics show`, never through a workspace's key.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import Query
from mangum import Mangum
from pydantic import BaseModel, Field

from shared.core import metrics
from shared.core.http import create_app
from shared.guard import spend
from shared.guard.deps import AdminKey, Db

app = create_app("metrics", description="Performance metrics of the workspace: count, avg, p50, p95, p99 per bucket.")


class MetricPoint(BaseModel):
    start: datetime = Field(description="Start of the bucket (UTC)")
    count: int
    avg: float
    p50: float
    p95: float
    p99: float


class MetricSeries(BaseModel):
    name: str
    bucket: str
    start: datetime
    end: datetime
    points: list[MetricPoint] = Field(description="Buckets that hold at least one point, oldest first")


class MetricName(BaseModel):
    name: str
    count: int
    first: datetime
    last: datetime


class MetricNames(BaseModel):
    start: datetime
    end: datetime
    data: list[MetricName]
    count: int


@app.get("/api/metrics", response_model=MetricSeries | MetricNames,
         summary="One metric per bucket, or (without name) the metric names with their counts")
def get_metrics(
    principal: AdminKey, conn: Db,
    name: str | None = Query(None, max_length=200, description="e.g. chat.ttft_ms; omit to list names"),
    start: str | None = Query(None, description="ISO 8601 or relative like -24h (default: 24 hours ago)"),
    end: str | None = Query(None, description="ISO 8601, 'now' or relative (default: now)"),
    bucket: str = Query("1h", description="Bucket size: 30s, 5m, 1h, 1d, 1w"),
) -> MetricSeries | MetricNames:
    start_at, end_at, size = metrics.window(start, end, bucket)
    if not name:
        names = metrics.list_names(conn, start_at, end_at, workspace_id=principal.workspace_id)
        return MetricNames(start=start_at, end=end_at, data=[MetricName(**n) for n in names], count=len(names))
    points = metrics.aggregate(conn, name, start_at, end_at, size, workspace_id=principal.workspace_id)
    return MetricSeries(name=name, bucket=bucket.strip(), start=start_at, end=end_at,
                        points=[MetricPoint(**p) for p in points])


class UsageDay(BaseModel):
    day: str
    tokens_in: int
    tokens_out: int
    total: int


class UsageTotals(BaseModel):
    tokens_in: int
    tokens_out: int
    total: int


class UsageToday(BaseModel):
    day: str
    used: int
    budget: int | None = Field(description="The daily token budget; null = no cap")
    remaining: int | None
    resets_in_seconds: int


class Usage(BaseModel):
    days: list[UsageDay]
    totals: UsageTotals
    today: UsageToday


@app.get("/api/metrics/usage", response_model=Usage,
         summary="Daily token usage of the workspace and what is left of today's budget")
def get_usage(principal: AdminKey, conn: Db, days: int = Query(30, ge=1, le=366)) -> Usage:
    return Usage.model_validate(spend.usage(conn, principal.workspace_id, days))


lambda_handler = Mangum(app)
