"""Daily token budgets: usage recorded in Postgres and mirrored in Redis; past the budget chat gets 429."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import Request

from scripts._serve import serve_in_thread
from shared.core.db import connect
from shared.core.errors import RateLimited
from shared.core.http import create_app
from shared.guard import spend
from shared.guard.auth import Principal
from shared.guard.deps import AnyKey
from shared.guard.ratelimit import check_chat


def _clear_caches() -> None:
    conftest = sys.modules.get("conftest") or __import__("tests.conftest").conftest
    conftest.clear_caches()


@pytest.fixture(params=["upstash", "redis_url"])
def budget_env(request, engine, monkeypatch):
    if request.param == "redis_url":
        monkeypatch.delenv("UPSTASH_REDIS_REST_URL")
        monkeypatch.setenv("REDIS_URL", f"unix://{engine.stack.local.redis.socket_file}")
    monkeypatch.setenv("DAILY_TOKEN_BUDGET", "1000")
    _clear_caches()
    workspace_id, admin_key = engine.workspace()
    return engine, workspace_id, admin_key


def test_usage_is_recorded_and_the_budget_enforced(budget_env) -> None:
    engine, ws, _ = budget_env
    with connect() as conn:
        assert spend.record_usage(conn, ws, 300, 200) == 500
        spend.check_budget(ws, 1000)
        assert spend.record_usage(conn, ws, 400, 100) == 1000
    with pytest.raises(RateLimited) as caught:
        spend.check_budget(ws, 1000)
    error = caught.value
    assert (error.status, error.code) == (429, "token_budget_exceeded")
    assert abs(error.retry_after - spend.seconds_to_midnight()) <= 2
    assert error.headers["Retry-After"] == str(error.retry_after)
    assert error.details == {"budget": 1000, "used": 1000, "retry_after": error.retry_after}
    spend.check_budget(ws, 1001)          # a larger budget still has room
    spend.check_budget(ws, 0)             # 0 = no cap
    with engine.db() as conn:
        row = conn.execute("SELECT day, tokens_in, tokens_out FROM usage_daily WHERE workspace_id = %s",
                           (ws,)).fetchone()
    assert row == {"day": datetime.now(UTC).date(), "tokens_in": 700, "tokens_out": 300}
    redis = engine.stack.local.redis
    assert redis.get(spend.counter_key(ws)) == b"1000"
    assert 0 < redis.ttl(spend.counter_key(ws)) <= spend.COUNTER_TTL_S


def test_the_redis_copy_heals_from_postgres_and_never_goes_backwards(budget_env) -> None:
    engine, ws, _ = budget_env
    with connect() as conn:
        spend.record_usage(conn, ws, 900, 0)
        engine.stack.local.redis.flushdb()          # Redis lost the counter (eviction, failover)
        spend.check_budget(ws, 1000)                # unknown = 0: the turn passes
        assert spend.record_usage(conn, ws, 50, 60) == 1010
        with pytest.raises(RateLimited):
            spend.check_budget(ws, 1000)
        # A slower turn reporting an older total must not lower the copy.
        engine.stack.local.redis.set(spend.counter_key(ws), 5000)
        spend.record_usage(conn, ws, 1, 1)
    assert engine.stack.local.redis.get(spend.counter_key(ws)) == b"5000"


def test_check_chat_includes_the_budget_with_assistant_and_workspace_overrides(budget_env) -> None:
    _, ws, _ = budget_env
    principal = Principal(workspace_id=ws, scope="chat", key_id="key_1", actor="key:key_1")
    with connect() as conn:
        spend.record_usage(conn, ws, 600, 0)
    check_chat(principal, None, "u1")                                    # 600 < 1000 (DAILY_TOKEN_BUDGET)
    with pytest.raises(RateLimited) as caught:
        check_chat(principal, {"daily_token_budget": 500}, "u1")          # the assistant's own cap
    assert caught.value.code == "token_budget_exceeded"
    with pytest.raises(RateLimited):
        check_chat(principal, None, "u1", workspace_settings={"daily_token_budget": 600})
    check_chat(principal, {"daily_token_budget": 0}, "u1")                # off for this assistant
    check_chat(principal, {"daily_token_budget": 500}, "u1", budget=False)  # caller checks it elsewhere


def test_budget_429_over_http_and_usage_for_metrics(budget_env) -> None:
    engine, ws, admin_key = budget_env
    app = create_app("budget-probe")

    @app.post("/chat")
    def chat(principal: AnyKey, request: Request) -> dict[str, str]:
        check_chat(principal, None, None)
        return {"answer": "ok"}

    with connect() as conn:
        spend.record_usage(conn, ws, 1200, 34)
        with engine.db() as raw:  # yesterday's usage, and a workspace-level budget
            raw.execute("INSERT INTO usage_daily VALUES (%s, %s, 10, 5)",
                        (ws, datetime.now(UTC).date() - timedelta(days=1)))
            raw.execute("""UPDATE workspaces SET settings = '{"daily_token_budget": 5000}' WHERE id = %s""", (ws,))
        report = spend.usage(conn, ws, days=7)
    url, stop = serve_in_thread(app)
    try:
        reply = httpx.post(f"{url}/chat", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)
    finally:
        stop()
    assert reply.status_code == 429 and int(reply.headers["Retry-After"]) >= 1
    assert reply.json()["error"]["code"] == "token_budget_exceeded"
    assert "00:00 UTC" in reply.json()["error"]["message"]

    today = datetime.now(UTC).date()
    assert [d["day"] for d in report["days"]] == [(today - timedelta(days=6 - i)).isoformat() for i in range(7)]
    assert report["days"][-1] == {"day": today.isoformat(), "tokens_in": 1200, "tokens_out": 34, "total": 1234}
    assert report["days"][-2]["total"] == 15 and report["days"][0]["total"] == 0
    assert report["totals"] == {"tokens_in": 1210, "tokens_out": 39, "total": 1249}
    assert report["today"]["used"] == 1234 and report["today"]["budget"] == 5000
    assert report["today"]["remaining"] == 3766 and 0 < report["today"]["resets_in_seconds"] <= 86400


def test_seconds_to_midnight() -> None:
    assert spend.seconds_to_midnight(datetime(2025, 3, 1, 23, 59, 30, tzinfo=UTC)) == 30
    assert spend.seconds_to_midnight(datetime(2025, 3, 1, 0, 0, 0, tzinfo=UTC)) == 86400
    assert spend.seconds_to_midnight(datetime(2025, 3, 1, 23, 59, 59, 999000, tzinfo=UTC)) == 1
