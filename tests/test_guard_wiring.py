"""The guards where they are used: ingestion rate limits on /api/sources, token usage on /api/metrics/usage."""

from __future__ import annotations

from shared.guard import spend
from tests.conftest import clear_caches


def make_assistant(engine, key: str) -> str:
    reply = engine.client(key).post("/api/assistants", json={"name": "Docs"})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def test_adding_sources_past_the_hourly_limit_gets_429_and_stores_nothing(engine, monkeypatch) -> None:
    monkeypatch.setenv("RATE_INGEST_PER_WORKSPACE_PER_HOUR", "2")
    clear_caches()
    workspace, key = engine.workspace()
    assistant = make_assistant(engine, key)
    text = {"assistant_id": assistant, "kind": "text", "title": "T", "content": "Opening hours are nine to five."}
    assert [engine.client(key).post("/api/sources", json=text).status_code for _ in range(2)] == [202, 202]
    refused = engine.client(key).post("/api/sources", json=text)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["retry-after"]) > 0
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM sources WHERE workspace_id = %s",
                            (workspace,)).fetchone()["n"] == 2
    other_workspace_key = engine.workspace("Other")[1]
    other_assistant = make_assistant(engine, other_workspace_key)
    assert engine.client(other_workspace_key).post(
        "/api/sources", json={**text, "assistant_id": other_assistant}).status_code == 202


def test_usage_shows_todays_tokens_and_the_budget(engine, monkeypatch) -> None:
    monkeypatch.setenv("DAILY_TOKEN_BUDGET", "1000")
    clear_caches()
    workspace, key = engine.workspace()
    with engine.db() as conn:
        spend.record_usage(conn, workspace, 120, 80)
    usage = engine.client(key).get("/api/metrics/usage", params={"days": 3})
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert len(body["days"]) == 3 and body["days"][-1]["total"] == 200
    assert body["today"]["used"] == 200 and body["today"]["remaining"] == 800 and body["today"]["budget"] == 1000
    other = engine.client(engine.workspace("B")[1]).get("/api/metrics/usage").json()
    assert other["today"]["used"] == 0
