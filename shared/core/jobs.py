"""Run a queued job once per message id and record it (status, attempts, error, duration).

The jobs themselves are not known here: api/jobs.py hands in `functions.JOBS` (name -> Job: payload model +
run function), so shared/ never imports functions/. A payload is validated once, against its job's model,
before anything is recorded or run; one that does not fit is refused as not retryable (`invalid_payload`).

A running attempt holds a short lease (jobs.lease_until) that a heartbeat thread renews while the body
runs. A function killed mid-run (timeout, OOM, deploy) stops renewing it, so the next QStash retry finds
the lease expired and runs the job again. A retry that arrives while the lease is still live is answered
503 with Retry-After just past the lease: a 2xx there would make QStash drop the message for good.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.core.db import Row, connect, fetch_one
from shared.core.errors import AppError, NotFound
from shared.core.metrics import track_metric
from shared.core.settings import get_settings

log = logging.getLogger("dialog_engine.jobs")
LEGACY_RUNNING = "15 minutes"  # a 'running' row from before leases (lease_until NULL) is dead after this
RETRY_MARGIN_S = 2             # a deferred retry comes back this long after the lease would run out


class NonRetryable(AppError):
    """The payload can never succeed (bad shape, gone record): QStash should not retry it."""

    status, code = 489, "job_not_retryable"


class JobRunning(AppError):
    """Another attempt of this message holds a live lease: a non-2xx keeps the message in QStash."""

    status, code = 503, "job_running"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class JobPayload(BaseModel):
    """What every job's payload model extends: a JSON object; `workspace_id` (when given) is the workspace the
    job acts in, checked to exist when the attempt is recorded. Unknown fields are ignored: a message queued
    by an older deploy (or a cron's {"cron": name}) still runs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    workspace_id: str | None = None


P = TypeVar("P", bound=JobPayload)


@dataclass(frozen=True)
class Job(Generic[P]):
    """One job: the model its payload must fit and the function that runs it."""

    payload: type[P]
    run: Callable[[P], Any]


Jobs = Mapping[str, Job[Any]]


def find(jobs: Jobs, name: str) -> Job[Any]:
    """The job called `name`; unknown names are 404 (a typo in a publish call must not be retried forever)."""
    job = jobs.get(name)
    if job is None:
        raise NotFound(f"No job named {name!r}.", code="unknown_job")
    return job


def parse(job: Job[P], name: str, payload: Any) -> P:
    """The payload as its job's model, or NonRetryable `invalid_payload` naming each field that is wrong."""
    try:
        return job.payload.model_validate(payload)
    except ValidationError as exc:
        # loc and msg only: the rejected input may hold user data and this answer goes back to the caller.
        problems = [{"field": ".".join(str(part) for part in error["loc"]) or "(payload)", "problem": error["msg"]}
                    for error in exc.errors(include_url=False, include_input=False)]
        raise NonRetryable(f"The {name} payload does not fit the job: "
                           + "; ".join(f"{p['field']}: {p['problem']}" for p in problems),
                           code="invalid_payload", details={"errors": problems}) from None


def claim(conn: psycopg.Connection[Row], name: str, payload: Any, message_id: str | None,
          retried: int, lease_s: float) -> Row | None:
    """Record the attempt and take its lease; None when this message id already succeeded or another
    attempt holds a live lease. ON CONFLICT locks the row and re-reads it, so concurrent copies of one
    delivery count as one attempt: the first takes the lease, the others see it live."""
    return fetch_one(conn, f"""
        INSERT INTO jobs (name, payload, message_id, workspace_id, attempts, lease_until)
        VALUES (%(name)s, %(payload)s, %(mid)s, %(ws)s, %(attempt)s, now() + make_interval(secs => %(lease)s))
        ON CONFLICT (message_id) DO UPDATE
            SET attempts = jobs.attempts + 1, status = 'running', error = NULL,
                started_at = now(), finished_at = NULL, lease_until = EXCLUDED.lease_until
            WHERE jobs.status = 'failed'
               OR (jobs.status = 'running'
                   AND coalesce(jobs.lease_until, jobs.started_at + interval '{LEGACY_RUNNING}') < now())
        RETURNING id, attempts""",
        {"name": name, "payload": Jsonb(payload), "mid": message_id, "attempt": retried + 1, "lease": lease_s,
         "ws": payload.get("workspace_id") if isinstance(payload, dict) else None})


def not_claimed(conn: psycopg.Connection[Row], name: str, message_id: str | None) -> dict[str, Any]:
    """A finished message is a true duplicate (200, nothing runs); anything else asks QStash to come back."""
    row = fetch_one(conn, f"""
        SELECT status, extract(epoch FROM coalesce(lease_until, started_at + interval '{LEGACY_RUNNING}')
                                          - now()) AS lease_left_s
        FROM jobs WHERE message_id = %s""", (message_id,))
    if row is not None and row["status"] == "succeeded":
        log.info("job %s message %s already succeeded; skipped", name, message_id)
        return {"status": "duplicate", "message_id": message_id}
    # Running under a live lease (or it just changed under us): retry once the lease would have run out.
    left = max(0.0, float(row["lease_left_s"])) if row and row["status"] == "running" else 0.0
    log.info("job %s message %s is running elsewhere; deferred %.0f s", name, message_id, left)
    raise JobRunning(f"Job {name} is running in another attempt; QStash will retry it.",
                     retry_after=math.ceil(left) + RETRY_MARGIN_S)


class Heartbeat:
    """Renews one attempt's lease every third of it from a daemon thread while the job body runs.

    Each beat opens its own short connection, so a dropped request connection cannot let the lease lapse
    under a job that is still working. A beat that finds the row finished or taken over stops quietly.
    """

    def __init__(self, job_id: str, attempt: int, lease_s: float) -> None:
        self.job_id, self.attempt, self.lease_s = job_id, attempt, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)  # a beat stuck connecting is harmless: it only renews a running row

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with connect() as conn:
                    renewed = conn.execute("""
                        UPDATE jobs SET lease_until = now() + make_interval(secs => %s)
                        WHERE id = %s AND attempts = %s AND status = 'running'""",
                                           (self.lease_s, self.job_id, self.attempt)).rowcount
            except Exception as exc:  # the next beat tries again; the lease is three beats long
                log.warning("job %s: renewing its lease failed: %s", self.job_id, type(exc).__name__)
                continue
            if not renewed:
                log.warning("job %s attempt %s no longer holds its lease", self.job_id, self.attempt)
                return


def finish(job_id: str, attempt: int, started: float, error: str | None = None) -> None:
    duration_ms = (time.perf_counter() - started) * 1000
    sql = """UPDATE jobs SET status = %s, error = %s, finished_at = now(), duration_ms = %s
             WHERE id = %s AND attempts = %s RETURNING name, workspace_id"""
    params = ("failed" if error else "succeeded", error, duration_ms, job_id, attempt)
    # A pooled connection dropped while idle is replaced at checkout; the record needs no fallback of its own.
    with connect() as conn:
        job = conn.execute(sql, params).fetchone()
    # No row: a newer attempt took the job over after our lease lapsed; its outcome is the one to keep.
    if job is not None:
        meta = {"job": job["name"], "status": "failed" if error else "succeeded"}
        track_metric("job.duration_ms", duration_ms, meta, job["workspace_id"])
        if error:  # the exception class only: its message may hold user data
            track_metric("job.failed", 1, {"job": job["name"], "error": error.split(":", 1)[0][:100]},
                         job["workspace_id"])


def run_job(jobs: Jobs, name: str, payload: Any, message_id: str | None, retried: int = 0) -> dict[str, Any]:
    """Validate, claim, run and record one delivery. Raises on failure so the caller answers non-2xx.

    No connection is held while the body runs: the claim and the record take one each, briefly, and the body
    takes its own where it needs one. (Holding the claim's connection through the body made every delivery use
    two pooled connections for its whole length: 16 deliveries at once on the default 10 left 6 to fail with
    `database_busy` and come back later.)"""
    job = find(jobs, name)
    parsed = parse(job, name, payload)
    lease_s = get_settings().job_lease_seconds
    with connect() as conn:
        try:
            claimed = claim(conn, name, payload, message_id, retried, lease_s)
        except psycopg.errors.ForeignKeyViolation:
            # A workspace deleted since the job was queued: the job can never run.
            raise NonRetryable(f"Workspace {parsed.workspace_id!r} does not exist (any more).") from None
        if claimed is None:
            return not_claimed(conn, name, message_id)
    started = time.perf_counter()
    try:
        with Heartbeat(claimed["id"], claimed["attempts"], lease_s):
            result = job.run(parsed)
    except Exception as exc:
        # The error text is stored for operators, never returned to the caller.
        finish(claimed["id"], claimed["attempts"], started, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finish(claimed["id"], claimed["attempts"], started)
    return {"status": "succeeded", "job_id": claimed["id"], "attempt": claimed["attempts"], "result": result}
