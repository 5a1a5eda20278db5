"""Round trips of a warm chat turn, counted where they arrive (PostgreSQL's wire protocol, the Upstash REST
stand-in's request log): before the model at most 2 SQL statements and 1 Redis round trip, after the answer
at most 2 statements (the reply with its token usage, the metrics write); and key revocation still holds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.core import metrics
from tests.conftest import clear_caches
from tests.fakes.chat_fixtures import chat, last, make_assistant
from tests.fakes.fixtures import add_page


@pytest.fixture
def counted(engine, openai_api, pg_wire, upstash_log, monkeypatch):
    """Counts (statements, Redis requests) taken when the model request arrives, for each turn."""
    monkeypatch.setenv("AUTH_CACHE_S", "60")  # a slow first turn on a loaded machine must not outlast the key
    clear_caches()
    at_model: list[tuple[int, int]] = []
    next_step = openai_api.next_step

    def noting(request: Any, body: dict[str, Any]) -> Any:
        at_model.append((pg_wire.mark()[0], upstash_log.mark()))
        return next_step(request, body)

    monkeypatch.setattr(openai_api, "next_step", noting)
    return at_model


def turn_counts(engine, key: str, assistant: str, message: str, pg_wire, upstash_log, at_model) -> dict[str, Any]:
    sql_start, connections = pg_wire.mark()
    redis_start = upstash_log.mark()
    at_model.clear()
    events = chat(engine.client(key), assistant_id=assistant, message=message)
    assert last(events, "done")["status"] == "complete" and last(events, "done")["stored"] is True
    pg_wire.wait_for("INSERT INTO performance_metrics", sql_start)  # written after the response
    metrics.flush(wait=True)
    time.sleep(0.1)
    (sql_model, redis_model), = at_model
    return {"sql_before": pg_wire.sql(sql_start)[:sql_model - sql_start],
            "sql_after": pg_wire.sql(sql_start, metrics=True)[sql_model - sql_start:],
            "redis_before": upstash_log.since(redis_start)[:redis_model - redis_start],
            "redis_after": upstash_log.since(redis_start)[redis_model - redis_start:],
            "connections": pg_wire.mark()[1] - connections}


def test_a_warm_hybrid_turn_makes_two_statements_and_one_redis_round_trip_before_the_model(
        engine, openai_api, pg_wire, upstash_log, counted) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, retrieval={"mode": "hybrid"})
        add_page(conn, workspace, assistant, "Refund policy",
                 [("Refunds", "Refunds are paid back within 14 days of the return.")])
    turn_counts(engine, key, assistant, "Do you ship abroad?", pg_wire, upstash_log, counted)  # a cold instance

    for question in ("How long do refunds take?",   # a new question: its embedding misses every cache
                     "How long do refunds take?"):  # asked again: this instance has the vector
        counts = turn_counts(engine, key, assistant, question, pg_wire, upstash_log, counted)
        before = counts["sql_before"]
        assert len(before) == 2, before  # the user message stored with the history read; retrieval
        assert "INSERT INTO messages" in before[0] and "chunks" in before[1]
        assert not any("api_keys" in s or "FROM assistants" in s for s in before)  # auth and assistant: cached
        assert len(counts["redis_before"]) == 1, counts["redis_before"]  # assistant, limits, budget, embedding
        after = counts["sql_after"]
        assert len(after) == 2, after  # the reply with its token usage; the metrics write
        assert "usage_daily" in after[0] and "performance_metrics" in after[1]
        assert len(counts["redis_after"]) <= 1, counts["redis_after"]  # budget copy (and a cache fill)
        assert counts["connections"] == 0  # all on connections the instance already had
    assert len(openai_api.embedding_requests) == 2  # each new question embedded once


def test_with_one_pooled_connection_a_turn_keeps_its_vector_search(engine, openai_api, pg_wire, upstash_log,
                                                                  counted, monkeypatch, caplog) -> None:
    """The query embedding checks the vector column's size (once a minute) on a connection of its own. With
    DB_POOL_SIZE=1 it waited for the one its own turn held, until the turn gave up on the embedding (its
    timeout, seconds) and searched by keywords alone: the first turn of every minute."""
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    clear_caches()
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, retrieval={"mode": "hybrid"})
        add_page(conn, workspace, assistant, "Refund policy",
                 [("Refunds", "Refunds are paid back within 14 days of the return.")])
    for question in ("Do you ship abroad?", "How long do refunds take?"):  # a cold instance's turn, a warm one
        counts = turn_counts(engine, key, assistant, question, pg_wire, upstash_log, counted)
    assert len(counts["sql_before"]) == 2, counts["sql_before"]  # the warm turn: no size check, no slot was free
    assert "query embedding failed" not in caplog.text and len(openai_api.embedding_requests) == 2
    assert "within 14 days" in str(openai_api.requests[-1]["messages"])


def test_a_revoked_key_is_refused_at_once_here_and_within_auth_cache_s_elsewhere(engine, monkeypatch) -> None:
    monkeypatch.setenv("AUTH_CACHE_S", "1")
    clear_caches()
    _, admin = engine.workspace()
    created = engine.client(admin).post("/api/keys", json={"scope": "admin", "name": "other"}).json()
    other = engine.client(created["key"])
    assert other.get("/api/keys").status_code == 200  # now trusted by this instance for a second

    # Revoked through the API on this instance: refused on the next request.
    assert engine.client(admin).delete(f"/api/keys/{created['id']}").status_code == 200
    refused = other.get("/api/keys")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"

    # Revoked by another instance (straight in the database): refused once AUTH_CACHE_S has passed.
    second = engine.client(admin).post("/api/keys", json={"scope": "admin", "name": "second"}).json()
    client = engine.client(second["key"])
    assert client.get("/api/keys").status_code == 200
    with engine.db() as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (second["id"],))
    time.sleep(1.1)
    assert client.get("/api/keys").status_code == 401
