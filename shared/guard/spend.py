"""Spend caps: model tokens per workspace per UTC day, counted in Postgres and mirrored in one Redis key.

usage_daily is the record; the Redis counter `spend:<workspace>:<YYYYMMDD>` is a copy of its total so
the check before a turn is one GET (or rides in ratelimit.check_chat's pipeline). record_usage writes
the row first and then raises the copy to the row's total, never lowers it, so concurrent turns and a
flushed Redis both converge on the database's number.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import RateLimited, ServiceUnavailable
from shared.core.kv import get_kv
from shared.core.settings import get_settings
from shared.guard.overrides import resolve

log = logging.getLogger("dialog_engine.spend")
COUNTER_TTL_S = 2 * 24 * 3600  # outlives its day in every time zone, then disappears
MAX_DAYS = 366

# SET the copy only if the new total is larger (two turns finishing out of order never go backwards).
RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local total = tonumber(ARGV[1])
if total > current then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return total end
return current
"""

UPSERT = """
    INSERT INTO usage_daily (workspace_id, day, tokens_in, tokens_out) VALUES (%s, %s, %s, %s)
    ON CONFLICT (workspace_id, day) DO UPDATE
    SET tokens_in = usage_daily.tokens_in + EXCLUDED.tokens_in,
        tokens_out = usage_daily.tokens_out + EXCLUDED.tokens_out
    RETURNING tokens_in + tokens_out AS total"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def counter_key(workspace_id: str, day: date | None = None) -> str:
    return f"spend:{workspace_id}:{(day or utc_now().date()):%Y%m%d}"


def seconds_to_midnight(now: datetime | None = None) -> int:
    """Seconds until the next UTC midnight, when the daily budget starts again (at least 1)."""
    now = now or utc_now()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return max(1, int((midnight - now).total_seconds() + 0.999))


def resolve_budget(assistant_limits: Mapping[str, Any] | None = None,
                   workspace_settings: Mapping[str, Any] | None = None) -> int:
    """The daily token budget in force: the assistant's, else the workspace's, else DAILY_TOKEN_BUDGET (0 = off)."""
    return resolve("daily_token_budget", get_settings().daily_token_budget, assistant_limits, workspace_settings)


def evaluate(used: int, budget: int) -> None:
    """Raise RateLimited(token_budget_exceeded) when `used` has reached a non-zero `budget`."""
    if budget > 0 and used >= budget:
        retry_after = seconds_to_midnight()
        raise RateLimited(
            f"This workspace has used its daily budget of {budget} model tokens; it renews at 00:00 UTC "
            f"(in {retry_after} s).", code="token_budget_exceeded", retry_after=retry_after,
            details={"budget": budget, "used": used, "retry_after": retry_after})


def check_budget(workspace_id: str, budget: int) -> None:
    """One Redis GET; raises RateLimited (429, code token_budget_exceeded) past the budget.

    A Redis outage lets the turn pass (logged): the cap is a guard rail, not a reason to stop answering.
    """
    if budget <= 0:
        return
    try:
        used = get_kv().get(counter_key(workspace_id))
    except ServiceUnavailable:
        log.warning("token budget not checked: Redis is unreachable")
        return
    evaluate(int(used or 0), budget)


def record_usage(conn: psycopg.Connection[Row], workspace_id: str, tokens_in: int, tokens_out: int) -> int:
    """Add a turn's tokens to today's usage (one statement, one Redis call); returns today's total."""
    tokens_in, tokens_out = max(0, int(tokens_in or 0)), max(0, int(tokens_out or 0))
    today = utc_now().date()
    row = fetch_one(conn, UPSERT, (workspace_id, today, tokens_in, tokens_out))
    total = int(row["total"]) if row else 0
    try:
        get_kv().pipeline([raise_counter_command(workspace_id, total, today)])
    except ServiceUnavailable:  # the row is written; the next record_usage brings the copy up to date
        log.warning("token counter not updated: Redis is unreachable")
    return total


def raise_counter_command(workspace_id: str, total: int, day: date | None = None) -> list[object]:
    """The Redis command that raises the budget's copy to `total` (never lowers it), for a caller's pipeline."""
    return ["EVAL", RAISE_TO, 1, counter_key(workspace_id, day), total, COUNTER_TTL_S]


def usage(conn: psycopg.Connection[Row], workspace_id: str, days: int = 30,
          budget: int | None = None) -> dict[str, Any]:
    """Daily token usage for /api/metrics: the last `days` UTC days (oldest first, zeros included) and today.

    Shape: {"days": [{"day": "2025-01-31", "tokens_in", "tokens_out", "total"}], "totals": {"tokens_in",
    "tokens_out", "total"}, "today": {"day", "used", "budget", "remaining", "resets_in_seconds"}}.
    `budget` defaults to the workspace's own setting, else DAILY_TOKEN_BUDGET; remaining is None when 0 = off.
    """
    days = max(1, min(int(days), MAX_DAYS))
    today = utc_now().date()
    rows = fetch_all(conn, """
        SELECT d::date AS day, coalesce(u.tokens_in, 0) AS tokens_in, coalesce(u.tokens_out, 0) AS tokens_out,
               w.settings AS settings
        FROM workspaces w
        CROSS JOIN generate_series(%s::date, %s::date, interval '1 day') AS d
        LEFT JOIN usage_daily u ON u.workspace_id = w.id AND u.day = d::date
        WHERE w.id = %s ORDER BY d""", (today - timedelta(days=days - 1), today, workspace_id))
    series = [{"day": r["day"].isoformat(), "tokens_in": int(r["tokens_in"]), "tokens_out": int(r["tokens_out"]),
               "total": int(r["tokens_in"]) + int(r["tokens_out"])} for r in rows]
    if budget is None:
        budget = resolve_budget(None, rows[0]["settings"] if rows else None)
    used = series[-1]["total"] if series else 0
    totals = {k: sum(d[k] for d in series) for k in ("tokens_in", "tokens_out", "total")}
    return {"days": series, "totals": totals,
            "today": {"day": today.isoformat(), "used": used, "budget": budget,
                      "remaining": max(0, budget - used) if budget > 0 else None,
                      "resets_in_seconds": seconds_to_midnight()}}
