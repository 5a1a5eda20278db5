"""Rate limits over the Upstash REST stand-in and a plain REDIS_URL: N pass, then 429 with Retry-After."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scripts._serve import serve_in_thread
from shared.core.errors import RateLimited
from shared.core.http import create_app
from shared.core.kv import get_kv
from shared.guard.auth import Principal
from shared.guard.deps import AnyKey
from shared.guard.ratelimit import check_chat, check_ingest


def _clear_caches() -> None:
    conftest = sys.modules.get("conftest") or __import__("tests.conftest").conftest
    conftest.clear_caches()


def away_from_window_edge(window_s: int = 60) -> None:
    """Sliding windows weigh the previous window: start a burst well inside the current one."""
    left = window_s - time.time() % window_s
    if left < 3:
        time.sleep(left + 0.05)


@pytest.fixture
def redis_only(stack, monkeypatch):
    """An empty Redis without the cost of a fresh database (these checks never touch Postgres)."""
    stack.local.redis.flushdb()
    _clear_caches()
    yield stack
    monkeypatch.undo()
    _clear_caches()


@pytest.fixture(params=["upstash", "redis_url"])
def redis_mode(request, redis_only, monkeypatch) -> str:
    if request.param == "redis_url":
        monkeypatch.delenv("UPSTASH_REDIS_REST_URL")
        monkeypatch.setenv("REDIS_URL", f"unix://{redis_only.local.redis.socket_file}")
    for name, value in {"RATE_CHAT_PER_KEY_PER_MINUTE": "3", "RATE_CHAT_PER_USER_PER_MINUTE": "2",
                        "RATE_INGEST_PER_WORKSPACE_PER_HOUR": "2", "RATE_UPLOAD_PER_WORKSPACE_PER_HOUR": "1",
                        "DAILY_TOKEN_BUDGET": "0"}.items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    assert get_kv().upstash == (request.param == "upstash")
    away_from_window_edge()
    return str(request.param)


def chat_key(workspace: str = "ws_a", key: str = "key_1") -> Principal:
    return Principal(workspace_id=workspace, scope="chat", key_id=key, actor=f"key:{key}")


def refused(call: Any, *args: Any, **kwargs: Any) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        call(*args, **kwargs)
    return caught.value


def test_chat_per_key_limit_then_429_with_retry_after(redis_mode) -> None:
    for _ in range(3):
        check_chat(chat_key(), None, None)
    error = refused(check_chat, chat_key(), None, None)
    assert (error.status, error.code) == (429, "rate_limited")
    assert 1 <= error.retry_after <= 60 and error.headers["Retry-After"] == str(error.retry_after)
    assert error.details["scope"] == "key" and error.details["limit"] == 3
    assert "3 per minute" in error.message
    check_chat(chat_key(key="key_2"), None, None)            # another key has its own budget
    check_chat(chat_key(workspace="ws_b"), None, None)       # and another workspace


def test_chat_per_user_limit_by_user_id_else_ip(redis_mode) -> None:
    limits = {"chat_per_key_per_minute": 100}
    check_chat(chat_key(), limits, "user-1")
    check_chat(chat_key(), limits, "user-1")
    assert refused(check_chat, chat_key(), limits, "user-1").details["scope"] == "user"
    check_chat(chat_key(), limits, "user-2")
    check_chat(chat_key(), limits, None, client_ip="203.0.113.9")
    check_chat(chat_key(), limits, None, client_ip="203.0.113.9")
    assert refused(check_chat, chat_key(), limits, None, client_ip="203.0.113.9").details["scope"] == "user"


def test_assistant_limits_override_the_settings(redis_mode) -> None:
    check_chat(chat_key(), {"chat_per_key_per_minute": 1}, None)
    assert refused(check_chat, chat_key(), {"chat_per_key_per_minute": 1}, None).details["limit"] == 1
    for _ in range(5):  # 0 switches the limit off for this assistant; junk values fall back to the setting
        check_chat(chat_key(key="key_9"), {"chat_per_key_per_minute": 0}, None)
    check_chat(chat_key(key="key_8"), {"chat_per_key_per_minute": "lots"}, None)
    check_chat(chat_key(key="key_8"), {"chat_per_key_per_minute": True}, None)
    check_chat(chat_key(key="key_8"), {"chat_per_key_per_minute": -4}, None)
    assert refused(check_chat, chat_key(key="key_8"), {}, None).details["limit"] == 3


def test_ingest_and_upload_limits_per_workspace_per_hour(redis_mode) -> None:
    check_ingest("ws_a")
    check_ingest("ws_a", "ingest")
    error = refused(check_ingest, "ws_a")
    assert error.code == "rate_limited" and error.details["window_seconds"] == 3600
    assert 1 <= error.retry_after <= 3600 and "ingestion requests" in error.message
    check_ingest("ws_a", "upload")                            # uploads count separately
    assert "file uploads" in refused(check_ingest, "ws_a", "upload").message
    check_ingest("ws_b", "upload")
    check_ingest("ws_b", "ingest", {"ingest_per_workspace_per_hour": 0})  # off for this workspace


def test_429_reaches_the_client_in_our_json_shape(redis_mode, engine) -> None:
    app = create_app("ratelimit-probe")

    @app.post("/chat")
    def chat(principal: AnyKey, request: Request) -> dict[str, str]:
        check_chat(principal, None, request.headers.get("x-user-id"))
        return {"answer": "ok"}

    _, admin_key = engine.workspace()
    url, stop = serve_in_thread(app)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10) as client:
            assert [client.post("/chat").status_code for _ in range(3)] == [200, 200, 200]
            reply = client.post("/chat")
    finally:
        stop()
    assert reply.status_code == 429
    assert 1 <= int(reply.headers["Retry-After"]) <= 60
    assert reply.headers["X-RateLimit-Limit"] == "3" and reply.headers["X-RateLimit-Remaining"] == "0"
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "rate_limited" and body["error"]["details"]["scope"] == "key"


class CountingProxy:
    """Forwards to the Upstash stand-in and counts HTTP round trips."""

    def __init__(self, target: str) -> None:
        self.target, self.requests = target, 0
        self.app = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])

    async def forward(self, request: Request) -> Response:
        self.requests += 1
        async with httpx.AsyncClient() as client:
            reply = await client.request(request.method, f"{self.target}/{request.path_params['path']}",
                                         content=await request.body(),
                                         headers={"authorization": request.headers.get("authorization", "")})
        return Response(reply.content, reply.status_code, media_type="application/json")


def test_a_chat_check_is_one_round_trip_with_both_limits_and_the_budget(redis_only, monkeypatch) -> None:
    import os

    proxy = CountingProxy(os.environ["UPSTASH_REDIS_REST_URL"].rstrip("/"))
    url, stop = serve_in_thread(proxy.app)
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", url)
    monkeypatch.setenv("DAILY_TOKEN_BUDGET", "1000")
    _clear_caches()
    try:
        check_chat(chat_key(), None, "user-1")
        assert proxy.requests == 1
        check_ingest("ws_a", "upload")
        assert proxy.requests == 2
    finally:
        stop()
    keys = sorted(redis_only.local.redis.keys("rl:*"))
    assert len(keys) == 3 and all(k.decode().startswith("rl:") for k in keys)


def test_redis_outage_lets_requests_through(redis_only, monkeypatch) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:9")  # nothing listens there
    _clear_caches()
    started = time.monotonic()
    check_chat(chat_key(), None, "user-1")
    check_ingest("ws_a")
    assert time.monotonic() - started < 10
