"""The `cleanup` job: drop finished job records past their retention and roll old metrics up into hourly
points (one row per metric, hour and workspace, holding the average and the count), so charts of past
months stay cheap while recent data keeps every point."""

from __future__ import annotations

from pydantic import Field

from shared.core.db import connect
from shared.core.jobs import JobPayload
from shared.knowledge.term_stats import compact_all

JOB_RETENTION_DAYS = 30
METRIC_RETENTION_DAYS = 30

ROLL_UP = """
WITH old AS (
    DELETE FROM performance_metrics
    WHERE "timestamp" < now() - make_interval(days => %(days)s) AND NOT metadata ? 'rollup'
    RETURNING name, value, "timestamp", workspace_id
)
INSERT INTO performance_metrics (name, value, "timestamp", metadata, workspace_id)
SELECT name, avg(value), date_trunc('hour', "timestamp"),
       jsonb_build_object('rollup', '1h', 'count', count(*), 'min', min(value), 'max', max(value)), workspace_id
FROM old GROUP BY name, date_trunc('hour', "timestamp"), workspace_id"""


class Payload(JobPayload):
    job_days: int = Field(JOB_RETENTION_DAYS, ge=1)
    metric_days: int = Field(METRIC_RETENTION_DAYS, ge=1)


def run(payload: Payload) -> dict[str, int]:
    with connect() as conn:
        jobs = conn.execute("""DELETE FROM jobs WHERE status <> 'running'
                               AND created_at < now() - make_interval(days => %s)""",
                            (payload.job_days,)).rowcount
        with conn.transaction():
            rolled = conn.execute(ROLL_UP, {"days": payload.metric_days}).rowcount
        compacted = compact_all(conn)
    return {"jobs_deleted": jobs, "metric_rollups_written": rolled, "term_stats_compacted": compacted}
