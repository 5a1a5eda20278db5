"""The `ping` job: proves the queue -> signed delivery -> jobs route -> function path works.

`fail_attempts: N` makes the first N deliveries of a ping fail, so operators (and tests) can watch
QStash retry a job and the jobs table record its attempts.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.core.db import connect
from shared.core.jobs import JobPayload
from shared.core.kv import get_kv


class PingFailure(RuntimeError):
    """The failure a ping was asked to simulate."""


class Payload(JobPayload):
    echo: Any = None
    fail_attempts: int = Field(0, ge=0)


def run(payload: Payload) -> dict[str, Any]:
    """Echo the payload and the database clock, so a caller sees the job really ran."""
    fail_attempts = payload.fail_attempts
    if fail_attempts:
        delivery = get_kv().incr(f"ping:deliveries:{payload.echo}", ttl=3600)
        if delivery <= fail_attempts:
            raise PingFailure(f"simulated failure {delivery} of {fail_attempts}")
    with connect() as conn:
        row = conn.execute("SELECT now() AS at").fetchone()
    return {"pong": payload.echo, "at": str(row["at"]) if row else None}
