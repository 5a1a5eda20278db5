"""Get a chat turn's model calls ready in a background thread, started when the turn begins.

The providers speak HTTP themselves (shared/llm/wire.py), so no SDK is left to load. What a fresh
instance's first turn would still pay for on its way to the model is small but serial: the provider
modules (with httpx-sse) and the one TLS context every model and embeddings client shares (loading the CA
bundle, ~30 ms). Started with the turn, both overlap auth and the database work; later turns find them
ready and start no thread.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable

from shared.llm.registry import PROVIDERS, is_configured, model_providers

log = logging.getLogger("dialog_engine.llm")

_started = False
_lock = threading.Lock()


def modules_for(providers: Iterable[str]) -> list[str]:
    """The modules `providers` import on first use, in order."""
    modules = [PROVIDERS[name].provider.partition(":")[0] for name in providers if name in PROVIDERS]
    return list(dict.fromkeys(modules))


def configured_modules() -> list[str]:
    """The provider modules a turn of this deployment may load: the template's own and its failover partners."""
    from shared.core.settings import get_settings

    settings = get_settings()
    return modules_for(name for name in model_providers() if is_configured(name, settings))


def prewarm() -> threading.Thread | None:
    """Once per process: import the configured providers' modules and make the TLS context they and the
    query embedding share, in a daemon thread; returns it, or None when started before or nothing calls out."""
    global _started
    with _lock:
        if _started:
            return None
        _started = True
    from shared.core.settings import get_settings

    settings = get_settings()
    modules = configured_modules()
    if not modules and not (settings.openai_api_key or settings.embedding_base_url):
        return None  # the offline answerer and keyword search: no HTTP to prepare
    thread = threading.Thread(target=_load, args=(modules,), name="llm-prewarm", daemon=True)
    thread.start()
    return thread


def _load(modules: list[str]) -> None:
    try:
        for module in modules:
            importlib.import_module(module)
        from shared.llm.wire import tls_context

        tls_context()
    except Exception as exc:  # the turn does it again where it needs it, and reports the error there
        log.warning("preparing the model clients failed: %s", type(exc).__name__)
