"""The `ping` job: proves the queue -> signed delivery -> jobs route -> function path works."""

from __future__ import annotations

from typing import Any

from shared.db import connect


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """Echo the payload and the database clock, so a caller sees the job really ran."""
    with connect() as conn:
        row = conn.execute("SELECT now() AS at").fetchone()
    return {"pong": payload.get("echo"), "at": str(row["at"]) if row else None}
