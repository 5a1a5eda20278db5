"""The `cleanup` job: drop finished job records and raw metrics past their retention."""

from __future__ import annotations

from typing import Any

from shared.db import connect

JOB_RETENTION_DAYS = 30
METRIC_RETENTION_DAYS = 30


def run(payload: dict[str, Any]) -> dict[str, int]:
    with connect() as conn:
        jobs = conn.execute("""DELETE FROM jobs WHERE status <> 'running'
                               AND created_at < now() - make_interval(days => %s)""",
                            (int(payload.get("job_days", JOB_RETENTION_DAYS)),)).rowcount
        metrics = conn.execute("""DELETE FROM performance_metrics
                                  WHERE "timestamp" < now() - make_interval(days => %s)""",
                               (int(payload.get("metric_days", METRIC_RETENTION_DAYS)),)).rowcount
    return {"jobs_deleted": jobs, "metrics_deleted": metrics}
