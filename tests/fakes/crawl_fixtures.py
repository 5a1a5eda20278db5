"""Fixtures for crawling and ingestion tests: the static site, the Firecrawl stand-in, blocked private hosts,
and helpers to create sources and wait for their sync. A fixture plugin (tests/conftest.py registers it):
request the fixtures by name; import only the helpers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from scripts._serve import serve_in_thread
from tests.fakes.firecrawl_server import FakeFirecrawl
from tests.fakes.fixtures import make_assistant
from tests.fakes.site_server import StaticSite
from tests.plugins.stack import clear_caches

_servers: dict[str, Any] = {}


def _serve_once(name: str, make: Any) -> Any:
    """One stand-in per test process, started on first use (daemon threads end with the process)."""
    if name not in _servers:
        fake = make()
        fake.url, _ = serve_in_thread(fake.app)
        _servers[name] = fake
    return _servers[name]


@pytest.fixture
def site() -> StaticSite:
    """The static site with its default pages, no scripted failures or faults and fresh hit counts."""
    served = _serve_once("site", StaticSite)
    served.reset()
    return served


@pytest.fixture
def firecrawl_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> FakeFirecrawl:
    """The Firecrawl stand-in, configured as FIRECRAWL_API_KEY / FIRECRAWL_API_URL for this test."""
    fake = _serve_once("firecrawl", FakeFirecrawl)
    fake.reset()
    monkeypatch.setenv("FIRECRAWL_API_KEY", fake.api_key)
    monkeypatch.setenv("FIRECRAWL_API_URL", fake.url)
    clear_caches()
    return fake


@pytest.fixture
def private_hosts_blocked(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production's SSRF rules (the stack allows private hosts so tests can crawl 127.0.0.1)."""
    monkeypatch.setenv("ALLOW_PRIVATE_HOSTS", "false")
    clear_caches()


def knowledge_setup(engine: Any) -> tuple[httpx.Client, str, str]:
    """(admin client, workspace id, assistant id)."""
    workspace_id, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
    return engine.client(key), workspace_id, assistant_id


def add_source(client: httpx.Client, assistant_id: str, **fields: Any) -> dict[str, Any]:
    reply = client.post("/api/sources", json={"assistant_id": assistant_id, **fields})
    assert reply.status_code == 202, reply.text
    return reply.json()


def wait_synced(engine: Any, client: httpx.Client, source_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for the job chain, then for the source to reach ready or failed; returns the source."""
    deadline = time.monotonic() + timeout
    while True:
        engine.wait_for_queue(timeout=max(1.0, deadline - time.monotonic()))
        source = client.get(f"/api/sources/{source_id}").json()
        if source["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return source
        time.sleep(0.05)


def chunk_rows(engine: Any, source_id: str) -> list[dict[str, Any]]:
    with engine.db() as conn:
        return conn.execute("""SELECT c.id, c.url, c.title, c.heading_path, c.text, c.vector_id,
                                      c.embedding IS NOT NULL AS has_embedding
                               FROM chunks c WHERE c.source_id = %s ORDER BY c.url, c.ordinal""",
                            (source_id,)).fetchall()
