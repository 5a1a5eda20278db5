"""Get a chat instance ready for its first turn in a background thread: at startup, else when a turn begins.

The providers speak HTTP themselves (shared/llm/wire.py), so no SDK is left to load. What a fresh
instance's first turn would still pay for on its way to the model is serial one-time work: the provider
modules (with httpx-sse), the one TLS context every HTTPS client shares (loading the CA bundle, ~30 ms,
without holding the GIL), the Redis client, and the modules a turn loads on first use (retrieval, the
vector store, the rate limiter's scripts, the language detector, anyio's thread backend: ~60 modules).
The chat functions start it from their ASGI lifespan (Vercel runs it at instance start), so it overlaps
the runtime's own start and the first request's auth and database waits; the turn's clock starts it too
(the dev router does not run the functions' lifespans). Later turns find everything ready.
`tests/test_turn_imports.py` fails when a first turn imports a module this left out.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable

from shared.core.settings import get_settings
from shared.llm.registry import PROVIDERS, is_configured, model_providers

log = logging.getLogger("dialog_engine.chat")

_started = False
_lock = threading.Lock()


def modules_for(providers: Iterable[str]) -> list[str]:
    """The modules `providers` import on first use, in order."""
    modules = [PROVIDERS[name].provider.partition(":")[0] for name in providers if name in PROVIDERS]
    return list(dict.fromkeys(modules))


def configured_modules() -> list[str]:
    """The provider modules a turn of this deployment may load: the template's own and its failover partners."""
    settings = get_settings()
    return modules_for(name for name in model_providers() if is_configured(name, settings))


def at_instance_start() -> None:
    """The chat functions' lifespan hook: warm up, and open the first pooled database connection."""
    warm_up(database=True)


def warm_up(database: bool = False) -> threading.Thread | None:
    """Once per process: get the first turn's one-time work done in a daemon thread; returns it, or None
    when started before. `database`: also open a pooled connection (a network round trip or three, and
    a backend to start), which only the instance's start asks for: a turn opens its own at once."""
    global _started
    with _lock:
        if _started:
            return None
        _started = True
    thread = threading.Thread(target=_load, args=(database,), name="turn-warm-up", daemon=True)
    thread.start()
    return thread


def turn_modules() -> list[str]:
    """The modules a turn imports on first use beside the providers', for this deployment's vector store."""
    store = {"pinecone": "pinecone_store"}.get(get_settings().resolved_vector_backend, "pgvector")
    return ["shared.knowledge.retrieval", "shared.knowledge.embeddings",
            f"shared.knowledge.vectors.{store}", "upstash_ratelimit.limiter", "pycld2"]


def _load(database: bool) -> None:
    try:
        from shared.core.tls import tls_context

        tls_context()  # first: it releases the GIL, so it overlaps the imports below on a second core
        for module in configured_modules() + turn_modules():
            importlib.import_module(module)
        "localhost".encode("idna")  # the first connection to a host by name loads the IDNA codec
        import anyio

        anyio.run(anyio.sleep, 0)  # loads anyio's asyncio backend, as the turn's first trip to a thread would
        from shared.core.kv import optional_kv

        optional_kv()
        if database and get_settings().db_pool_size:
            _first_connection()
    except Exception as exc:  # the turn does it again where it needs it, and reports the error there
        log.warning("warming up for the first turn failed: %s", type(exc).__name__)


def _first_connection() -> None:
    """Open the pool's first connection, left idle for the first request (checked on checkout, closed when
    stale). On it, the check the first query embedding would make on a connection of its own, beside the
    turn's: whether the stored vectors have EMBEDDING_DIMENSIONS (once a minute per process)."""
    from shared.core.db import connect, get_pool
    from shared.knowledge.embeddings import embeddings_enabled, verify_store_dimensions

    if embeddings_enabled():
        verify_store_dimensions()  # on pgvector: a pooled connection, given back
    pool = get_pool()
    if pool is not None and pool.idle_count() == 0:
        with connect():
            pass
