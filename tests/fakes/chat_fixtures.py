"""Fixtures for chat tests: the OpenAI and Anthropic stand-ins, assistants with overrides, SSE readers.

A fixture plugin (tests/conftest.py registers it): request the fixtures by name; import only the helpers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb

from scripts._serve import serve_in_thread
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.fault_proxy import FaultProxy
from tests.fakes.openai_server import FakeOpenAI
from tests.plugins.stack import CACHE_CLEARERS, clear_caches


def _clear_llm_clients() -> None:
    from shared import llm

    llm.clear_clients()


if _clear_llm_clients not in CACHE_CLEARERS:
    CACHE_CLEARERS.append(_clear_llm_clients)

_servers: dict[str, Any] = {}


def _serve_once(name: str, make: Any) -> tuple[Any, str]:
    if name not in _servers:
        fake = make()
        url, _ = serve_in_thread(fake.app)
        _servers[name] = (fake, url)
    return _servers[name]


@pytest.fixture
def openai_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The OpenAI stand-in as the configured OpenAI (fresh script and request log)."""
    fake, url = _serve_once("openai", FakeOpenAI)
    fake.reset()
    monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
    clear_caches()
    return fake


@pytest.fixture
def anthropic_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """The Anthropic stand-in as the configured Anthropic."""
    fake, url = _serve_once("anthropic", FakeAnthropic)
    fake.reset()
    monkeypatch.setenv("ANTHROPIC_API_KEY", fake.api_key)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    clear_caches()
    return fake


@pytest.fixture
def redis_proxy(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A FaultProxy in front of the Upstash REST stand-in, configured as the engine's Redis."""
    import os
    from urllib.parse import urlsplit

    url = urlsplit(os.environ["UPSTASH_REDIS_REST_URL"])
    proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 80)
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", f"{url.scheme}://127.0.0.1:{proxy.port}")
    clear_caches()
    yield proxy
    proxy.stop()


def make_assistant(conn: Any, workspace_id: str, name: str = "Helper", allowed_origins: list[str] | None = None,
                   **overrides: Any) -> str:
    """An assistant on the built-in template; keyword retrieval unless overridden (no embedding calls)."""
    overrides.setdefault("retrieval", {"mode": "keyword"})
    row = conn.execute("""INSERT INTO assistants (workspace_id, name, template_id, overrides, allowed_origins)
                          VALUES (%s, %s, 'default', %s, %s) RETURNING id""",
                       (workspace_id, name, Jsonb(overrides), allowed_origins or [])).fetchone()
    return row["id"]


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Native events: [(event name, data)]."""
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def chat(client: httpx.Client, **body: Any) -> list[tuple[str, Any]]:
    """POST /api/chat and read the whole event stream."""
    reply = client.post("/api/chat", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return parse_sse(reply.text)


def text_of(events: list[tuple[str, Any]]) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


def last(events: list[tuple[str, Any]], name: str) -> Any:
    return [data for n, data in events if n == name][-1]


def messages(conn: Any, conversation_id: str) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM messages WHERE conversation_id = %s ORDER BY seq",
                        (conversation_id,)).fetchall()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def new_chat_key(engine: Any, admin_key: str, *assistant_ids: str, **fields: Any) -> dict[str, Any]:
    """A chat key made for these assistants (for a new one when none is named); the created key's JSON,
    with its identity secret."""
    if not assistant_ids:
        from shared.guard.auth import hash_key

        with engine.db() as conn:
            workspace = conn.execute("SELECT workspace_id FROM api_keys WHERE hash = %s",
                                     (hash_key(admin_key),)).fetchone()["workspace_id"]
            assistant_ids = (make_assistant(conn, workspace, name="Widget helper"),)
    created = httpx.post(f"{engine.url}/api/keys", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30,
                         json={"scope": "chat", "assistant_ids": list(assistant_ids), **fields})
    assert created.status_code == 201, created.text
    return dict(created.json())


def signed_in(secret: str, user_id: str) -> dict[str, str]:
    """Headers of a verified end user: user id and its HMAC, as the customer's backend computes it."""
    import hashlib
    import hmac

    signature = hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return {"x-user-id": user_id, "x-user-hash": signature}
