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
