"""Run a queued job once per message id and record it (status, attempts, error, duration)."""

from __future__ import annotations

import importlib
import logging
import re
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.db import Row, fetch_one
from shared.errors import AppError, NotFound
from shared.metrics import track_metric

log = logging.getLogger("dialog_engine.jobs")
JOB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
STALE_RUNNING = "15 minutes"  # a 'running' row older than this died with its function; run it again


class NonRetryable(AppError):
    """The payload can never succeed (bad shape, gone record): QStash should not retry it."""

    status, code = 489, "job_not_retryable"


def load(name: str) -> Any:
    """functions/{name}.py's run(); unknown names are 404 so nothing arbitrary is imported."""
    if not JOB_NAME.match(name):
        raise NotFound(f"No job named {name!r}.", code="unknown_job")
    try:
        module = importlib.import_module(f"functions.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"functions.{name}":
            raise NotFound(f"No job named {name!r}.", code="unknown_job") from exc
        raise
    run = getattr(module, "run", None)
    if not callable(run):
        raise NotFound(f"No job named {name!r}.", code="unknown_job")
    return run


def claim(conn: psycopg.Connection[Row], name: str, payload: Any, message_id: str | None,
          retried: int) -> Row | None:
    """Record the attempt; None when this message id already succeeded or is running right now."""
    return fetch_one(conn, f"""
        INSERT INTO jobs (name, payload, message_id, workspace_id, attempts)
        VALUES (%(name)s, %(payload)s, %(mid)s, %(ws)s, %(attempt)s)
        ON CONFLICT (message_id) DO UPDATE
            SET attempts = jobs.attempts + 1, status = 'running', error = NULL,
                started_at = now(), finished_at = NULL
            WHERE jobs.status = 'failed'
               OR (jobs.status = 'running' AND jobs.started_at < now() - interval '{STALE_RUNNING}')
        RETURNING id, attempts""",
        {"name": name, "payload": Jsonb(payload), "mid": message_id, "attempt": retried + 1,
         "ws": payload.get("workspace_id") if isinstance(payload, dict) else None})


def finish(conn: psycopg.Connection[Row], job_id: str, started: float, error: str | None = None) -> None:
    duration_ms = (time.perf_counter() - started) * 1000
    job = conn.execute("""UPDATE jobs SET status = %s, error = %s, finished_at = now(), duration_ms = %s
                          WHERE id = %s RETURNING name, workspace_id""",
                       ("failed" if error else "succeeded", error, duration_ms, job_id)).fetchone()
    if job is not None:
        meta = {"job": job["name"], "status": "failed" if error else "succeeded"}
        track_metric("job.duration_ms", duration_ms, meta, job["workspace_id"])
        if error:  # the exception class only: its message may hold user data
            track_metric("job.failed", 1, {"job": job["name"], "error": error.split(":", 1)[0][:100]},
                         job["workspace_id"])


def run_job(conn: psycopg.Connection[Row], name: str, payload: Any, message_id: str | None,
            retried: int = 0) -> dict[str, Any]:
    """Claim, run and record one delivery. Raises on failure so the caller answers non-2xx."""
    run = load(name)
    # Every job takes a JSON object; one naming a workspace that is gone (deleted since it was queued) can never run.
    if not isinstance(payload, dict):
        raise NonRetryable(f"The {name} payload must be a JSON object.")
    workspace_id = payload.get("workspace_id")
    if workspace_id is not None and not isinstance(workspace_id, str):
        raise NonRetryable("workspace_id must be a string.")
    try:
        job = claim(conn, name, payload, message_id, retried)
    except psycopg.errors.ForeignKeyViolation:
        raise NonRetryable(f"Workspace {workspace_id!r} does not exist (any more).") from None
    if job is None:
        log.info("job %s message %s already ran or is running; skipped", name, message_id)
        return {"status": "duplicate", "message_id": message_id}
    started = time.perf_counter()
    try:
        result = run(payload)
    except Exception as exc:
        # The error text is stored for operators, never returned to the caller.
        finish(conn, job["id"], started, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finish(conn, job["id"], started)
    return {"status": "succeeded", "job_id": job["id"], "attempt": job["attempts"], "result": result}
