"""Anonymous traffic is cheap: a liveness ping, a request without a key and a request for no route open no
database connection (not even for metrics), send no Redis command and no QStash call. The counts still reach
the metrics table with the next real write, and an operator's health check reaches every dependency."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.core import metrics
from tests.conftest import clear_caches
from tests.fakes.tcp_proxy import TcpProxy, postgres_target

ANONYMOUS = [("GET", "/api/health", 200), ("GET", "/api/keys", 401), ("POST", "/api/sources", 401),
             ("GET", "/api/conversations", 401), ("GET", "/api/nothing-here", 404), ("GET", "/api/keys/a/b/c", 404),
             ("DELETE", "/api/health", 405)]


@dataclass
class Meters:
    database: TcpProxy
    queue: TcpProxy
    redis: Any

    def redis_commands(self) -> int:
        return sum(stat["calls"] for name, stat in self.redis.info("commandstats").items()
                   if name not in ("cmdstat_info",))

    def reading(self) -> tuple[int, int, int]:
        return self.database.accepted, self.queue.accepted, self.redis_commands()


@pytest.fixture
def meters(engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meters]:
    """The engine's database and QStash reached through counting proxies; Redis counted by its own stats."""
    database = TcpProxy(postgres_target(engine.dsn))
    queue_url = urlsplit(os.environ["QSTASH_URL"])
    queue = TcpProxy((queue_url.hostname or "127.0.0.1", queue_url.port or 80))
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{database.port}/{urlsplit(engine.dsn).path[1:]}")
    monkeypatch.setenv("QSTASH_URL", f"http://127.0.0.1:{queue.port}")
    clear_caches()
    metrics.flush(wait=True)  # nothing left over from earlier tests
    try:
        yield Meters(database, queue, engine.stack.local.redis)
    finally:
        database.close()
        queue.close()


def settle() -> None:
    time.sleep(0.3)  # the metrics flush runs after the response: give it the time to happen (or not)


def test_anonymous_requests_open_no_connection_and_call_no_dependency(engine, meters) -> None:
    client = engine.client()
    before = meters.reading()
    for _ in range(5):
        for method, path, status in ANONYMOUS:
            assert client.request(method, path).status_code == status, (method, path)
    settle()
    after = meters.reading()
    print(f"\n35 anonymous requests: {after[0] - before[0]} database connections, {after[1] - before[1]} QStash "
          f"connections, {after[2] - before[2]} Redis commands")
    assert after == before
    assert client.get("/api/health").json() == {"status": "ok"}  # liveness tells nothing about dependencies


def test_anonymous_requests_are_counted_with_the_next_real_write(engine, meters) -> None:
    _, admin = engine.workspace()
    for method, path, _ in ANONYMOUS:
        engine.client().request(method, path)
    assert engine.client(admin).get("/api/keys").status_code == 200  # a metered request: its flush takes the counts
    settle()
    with engine.db() as conn:
        rows = conn.execute("""SELECT value, metadata FROM performance_metrics WHERE name = 'http.request_count'
                               """).fetchall()
    counted = {(r["metadata"]["route"], r["metadata"]["method"], r["metadata"]["status"]): r["value"] for r in rows}
    assert counted[("/api/health", "GET", 200)] == 1
    assert counted[("/api/keys", "GET", 401)] == 1 and counted[("unmatched", "GET", 404)] == 1
    assert counted[("/api/health", "DELETE", 405)] == 1


def test_health_report_needs_an_admin_key_or_cron_secret_and_then_checks_everything(engine, meters) -> None:
    from shared.guard.auth import create_key

    workspace_id, admin = engine.workspace()
    with engine.db() as conn:
        chat, _ = create_key(conn, workspace_id, "chat", name="widget")
    refused = engine.client().get("/api/health", params={"deep": "1"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
    assert engine.client("de_admin_not-a-real-key").get("/api/health").status_code == 401
    assert engine.client(chat).get("/api/health").status_code == 403

    before = meters.reading()
    for key in (admin, os.environ["CRON_SECRET"]):
        reply = engine.client(key).get("/api/health")
        assert reply.status_code == 200, reply.text
        checks = reply.json()["checks"]
        assert checks["db"]["status"] == checks["redis"]["status"] == checks["queue"]["status"] == "ok"
    after = meters.reading()
    assert all(a > b for a, b in zip(after, before, strict=True))  # it really asked PostgreSQL, QStash and Redis

