"""shared.core.kv works the same over Upstash REST (the stand-in) and a plain REDIS_URL (self-hosting)."""

from __future__ import annotations

import pytest

from shared.core.kv import get_kv
from shared.core.queue import publish
from tests.conftest import clear_caches


@pytest.fixture(params=["upstash", "redis_url"])
def kv(request, engine, monkeypatch):
    if request.param == "redis_url":
        monkeypatch.delenv("UPSTASH_REDIS_REST_URL")
        monkeypatch.setenv("REDIS_URL", f"unix://{engine.stack.local.redis.socket_file}")
        clear_caches()
    client = get_kv()
    assert client.upstash == (request.param == "upstash")
    return client


def test_cache_get_set_with_ttl_incr_delete_pipeline(kv, engine) -> None:
    kv.set("greeting", "grüß dich", ttl=60)
    assert kv.get("greeting") == "grüß dich"
    assert 0 < engine.stack.local.redis.ttl("greeting") <= 60
    kv.set_json("doc", {"a": [1, 2]}, ttl=60)
    assert kv.get_json("doc") == {"a": [1, 2]}
    assert [kv.incr("hits", ttl=30) for _ in range(3)] == [1, 2, 3]
    assert 0 < engine.stack.local.redis.ttl("hits") <= 30
    assert kv.pipeline([["SET", "p", "1"], ["INCRBY", "p", 4], ["GET", "p"]])[1:] == [5, "5"]
    assert sorted(kv.scan("*")) == ["doc", "greeting", "hits", "p"]
    assert kv.delete("greeting", "p") == 2
    assert kv.get("greeting") is None


def test_publish_with_the_same_dedup_id_runs_once(engine) -> None:
    first = publish("ping", {"echo": 1}, dedup_id="same-job")
    second = publish("ping", {"echo": 2}, dedup_id="same-job")
    engine.wait_for_queue()
    with engine.db() as conn:
        rows = conn.execute("SELECT message_id, payload FROM jobs").fetchall()
    assert first == second
    assert [(r["message_id"], r["payload"]) for r in rows] == [(first, {"echo": 1})]


def test_delayed_job_waits(engine) -> None:
    import time

    start = time.monotonic()
    publish("ping", {"echo": "later"}, delay="1s")
    engine.wait_for_queue()
    assert time.monotonic() - start >= 0.9


def test_a_refused_command_raises_and_redis_stays_in_use(kv) -> None:
    """Redis refusing a command is our bug, raised as such; it must not look like an outage (breaker)."""
    kv.set("word", "not a number")
    with pytest.raises(Exception) as refused:
        kv.pipeline([["INCRBY", "word", 1]])
    assert type(refused.value).__name__ in ("UpstashCommandError", "ResponseError")
    assert "not an integer" in str(refused.value)
    assert kv.get("word") == "not a number"  # no ServiceUnavailable: the breaker did not open


def test_a_wrong_upstash_token_is_an_outage_not_a_crash(engine, monkeypatch) -> None:
    from shared.core.errors import ServiceUnavailable

    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "wrong-token")
    clear_caches()
    with pytest.raises(ServiceUnavailable) as down:
        get_kv().get("anything")
    assert down.value.code == "redis_unavailable"
    assert "wrong-token" not in str(down.value)


def test_upstash_sync_token_is_echoed_so_a_global_database_reads_its_own_writes(monkeypatch) -> None:
    """Upstash's global databases answer with `Upstash-Sync-Token`; sent back, a replica waits for our write."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from scripts._serve import serve_in_thread
    from shared.core.upstash_rest import UpstashRest

    seen: list[str | None] = []

    async def command(request: Request) -> JSONResponse:
        seen.append(request.headers.get("upstash-sync-token"))
        return JSONResponse({"result": "OK"}, headers={"Upstash-Sync-Token": f"t{len(seen)}"})

    url, stop = serve_in_thread(Starlette(routes=[Route("/", command, methods=["POST"])]))
    try:
        client = UpstashRest(url, "token", 2.0)
        client.set("a", "1")
        client.set("b", "2")
        client.get("a")
    finally:
        stop()
    assert seen == [None, "t1", "t2"]
