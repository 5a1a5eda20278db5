"""Redis for cache, counters and dedup: Upstash over REST in production, plain REDIS_URL for self-hosting.

Both clients are created on first use (they cost import time) and wrapped in the few operations we use,
so the rest of the code never cares which one is behind: Upstash's REST wire is spoken by
shared.core.upstash_rest (on the TLS context every HTTPS client shares), plain Redis by redis-py. Every
call is bounded by REDIS_TIMEOUT_S, and after a failed call Redis is skipped for REDIS_BREAKER_S: callers
get ServiceUnavailable at once and degrade (limits fail open, caches miss), so a Redis that is down
costs a turn one timeout, not one per call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import lru_cache
from typing import Any

from shared.core.errors import ServiceUnavailable
from shared.core.settings import get_settings

log = logging.getLogger("dialog_engine.kv")
COMMAND_ERRORS = {"UpstashCommandError", "ResponseError"}  # Redis answered, and refused the command


class KV:
    """The operations we use, over either client. Values are strings; *_json helpers encode JSON."""

    def __init__(self, client: Any, upstash: bool, breaker_s: float = 0.0) -> None:
        self.client = client
        self.upstash = upstash
        self.breaker_s = breaker_s
        self._down_until = 0.0
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        return self._call(self.client.get, key)

    def set(self, key: str, value: str, ttl: int | None = None) -> None:
        self._call(self.client.set, key, value, ex=ttl)

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        """Increment; the first increment of a key starts its TTL."""
        if ttl is None:
            return int(self._call(self.client.incrby, key, amount))
        # SET NX starts the TTL only once (EXPIRE NX needs Redis 7; self-hosted 6.2 must work too).
        _, value = self.pipeline([["SET", key, 0, "EX", ttl, "NX"], ["INCRBY", key, amount]])
        return int(value)

    def delete(self, *keys: str) -> int:
        return int(self._call(self.client.delete, *keys)) if keys else 0

    def ping(self) -> bool:
        return bool(self._call(self.client.ping))

    def pipeline(self, commands: list[list[Any]]) -> list[Any]:
        """Several commands in one round trip (not atomic)."""
        if self.upstash:
            return self._call(self.client.pipeline, [[str(part) for part in command] for command in commands])
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return self._call(pipe.execute)

    def scan(self, pattern: str, count: int = 500) -> list[str]:
        keys, cursor = [], 0
        while True:
            cursor, batch = self._call(self.client.scan, cursor, match=pattern, count=count)
            keys.extend(batch)
            if int(cursor) == 0:
                return keys

    def get_json(self, key: str) -> Any:
        raw = self.get(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any, ttl: int | None = None) -> None:
        self.set(key, json.dumps(value, default=str, separators=(",", ":")), ttl)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._down_until and time.monotonic() < self._down_until:
            raise ServiceUnavailable("Redis is unreachable; try again shortly.", code="redis_unavailable")
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # both clients raise their own transport errors
            if type(exc).__name__ in COMMAND_ERRORS:
                raise  # a command Redis refused is our bug, not an outage
            log.warning("redis call failed: %s", type(exc).__name__)
            if self.breaker_s > 0:
                with self._lock:
                    self._down_until = time.monotonic() + self.breaker_s
            raise ServiceUnavailable("Redis is unreachable; try again shortly.", code="redis_unavailable") from exc


@lru_cache
def get_kv() -> KV:
    """The process-wide Redis client (tests clear this cache when they switch servers)."""
    settings = get_settings()
    if settings.upstash_redis_rest_url and settings.upstash_redis_rest_token:
        from shared.core.upstash_rest import UpstashRest

        client = UpstashRest(settings.upstash_redis_rest_url, settings.upstash_redis_rest_token,
                             settings.redis_timeout_s)
        return KV(client, upstash=True, breaker_s=settings.redis_breaker_s)
    if settings.redis_url:
        import redis

        timeout = settings.redis_timeout_s
        plain = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=timeout,
                                     socket_connect_timeout=timeout)
        return KV(plain, upstash=False, breaker_s=settings.redis_breaker_s)
    raise ServiceUnavailable("Set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN (or REDIS_URL).",
                             code="redis_not_configured")


def optional_kv() -> KV | None:
    """The Redis client, or None when none is configured: for callers whose cache only saves work (embeddings,
    robots.txt, the assistant cache), which then do the work every time. An outage still raises on each call."""
    try:
        return get_kv()
    except ServiceUnavailable:
        return None

