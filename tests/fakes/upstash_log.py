"""The Upstash REST stand-in with a request log: each request the engine makes is one Redis round trip.

A second instance of scripts/local_upstash.py over the stack's Redis, configured as the engine's Redis;
the log holds (monotonic time, the commands of the request).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest


class UpstashLog:
    def __init__(self) -> None:
        self.requests: list[tuple[float, list[str]]] = []
        self._lock = threading.Lock()

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[list[str]]:
        """The command names of each request after `mark` (one inner list per round trip)."""
        with self._lock:
            return [commands for _, commands in self.requests[mark:]]

    def add(self, body: bytes) -> None:
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], list):
            names = [str(command[0]).upper() for command in parsed if command]
        elif isinstance(parsed, list) and parsed:
            names = [str(parsed[0]).upper()]
        else:
            names = ["?"]
        with self._lock:
            self.requests.append((time.monotonic(), names))


@pytest.fixture
def upstash_log(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[UpstashLog]:
    from scripts import local_upstash
    from scripts._serve import serve_in_thread
    from tests.fakes.pg_wire import _clear_caches

    app = local_upstash.create_app(engine.stack.local.redis, os.environ["UPSTASH_REDIS_REST_TOKEN"])
    log = UpstashLog()

    async def logged(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        chunks: list[bytes] = []

        async def reading() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                log.add(b"".join(chunks))
            return message

        await app(scope, reading, send)

    url, stop = serve_in_thread(logged)
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", url)
    _clear_caches()
    try:
        yield log
    finally:
        stop()
