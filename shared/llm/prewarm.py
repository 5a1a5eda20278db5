"""Load the model SDKs a chat turn needs in a background thread, started when the turn begins.

SDKs load on first use, never at import, so a function's cold start pays only for its route. But the
first turn on a fresh instance then waited for `import openai` (about as long as the whole function's
import) after its database work, and the first failover to Anthropic for `import anthropic` (three times
that, measured in bench/cold_start.py). Started with the turn, the import overlaps auth, the database
and the query embedding, and the failover partner's SDK is loaded by the time a later turn needs it.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterable

from shared.llm.registry import PROVIDERS, is_configured, model_providers

log = logging.getLogger("dialog_engine.llm")
EMBEDDINGS_SDK = "openai"  # shared.knowledge.embeddings' client

_requested: set[str] = set()
_lock = threading.Lock()


def modules_for(providers: Iterable[str]) -> list[str]:
    """The modules `providers` import on first use, in order: each one's provider module, then its SDK."""
    modules: list[str] = []
    for name in providers:
        spec = PROVIDERS.get(name)
        if spec is not None:
            modules += [spec.provider.partition(":")[0], *([spec.sdk] if spec.sdk else [])]
    return list(dict.fromkeys(modules))


def configured_modules() -> list[str]:
    """What a turn of this deployment may load: every configured model provider (the template's own and
    its failover partners) and, when embeddings are on, their client's SDK."""
    from shared.core.settings import get_settings

    settings = get_settings()
    modules = modules_for(name for name in model_providers() if is_configured(name, settings))
    if settings.openai_api_key or settings.embedding_base_url:
        modules.append(EMBEDDINGS_SDK)
    return list(dict.fromkeys(modules))


def prewarm(providers: Iterable[str] | None = None) -> threading.Thread | None:
    """Import the modules of `providers` (default: configured_modules()) in a daemon thread, each at most
    once per process; returns the thread, or None when there was nothing left to load."""
    wanted = configured_modules() if providers is None else modules_for(providers)
    with _lock:
        todo = [m for m in wanted if m not in _requested and m not in sys.modules]
        _requested.update(todo)
    if not todo:
        return None
    thread = threading.Thread(target=_load, args=(todo,), name="sdk-prewarm", daemon=True)
    thread.start()
    return thread


def _load(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # the turn imports it again where it needs it, and reports the error there
            log.warning("preloading %s failed: %s", module, type(exc).__name__)
