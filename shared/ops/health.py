"""Dependency checks for /api/health and `python -m scripts health`: each answers ok/down with its latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.core.settings import get_settings

REQUIRED = ("db", "redis")


def require_operator(token: str) -> None:
    """Unauthorized/Forbidden unless `token` is CRON_SECRET or an admin key (the key needs the database:
    with it down, CRON_SECRET still gets the report)."""
    import hmac

    from shared.core.db import connect
    from shared.core.errors import Forbidden
    from shared.guard.auth import principal_for_key

    secret = get_settings().cron_secret
    if secret and hmac.compare_digest(token.encode(), secret.encode()):
        return
    with connect() as conn:
        principal = principal_for_key(conn, token)
    if not principal.is_admin:
        raise Forbidden("Dependency checks need an admin key or CRON_SECRET.", code="admin_key_required")


def check_db() -> str:
    from shared.core.db import connect

    with connect(fresh=True) as conn:  # not a pooled one: it must show that new connections are accepted
        conn.execute("SELECT 1")
    return "PostgreSQL answers"


def check_redis() -> str:
    from shared.core.kv import get_kv

    get_kv().ping()
    return "Redis answers"


def check_queue() -> str:
    import httpx

    settings = get_settings()
    if not settings.qstash_token:
        raise LookupError("QSTASH_TOKEN is not set")
    base = (settings.qstash_url or "https://qstash.upstash.io").rstrip("/")
    reply = httpx.get(f"{base}/v2/schedules", headers={"Authorization": f"Bearer {settings.qstash_token}"},
                      timeout=3)
    reply.raise_for_status()
    return "QStash answers"


def check_vectors() -> str:
    """What embeds (the local model, an API, or none: keyword search only) and the store, with its size."""
    from shared.knowledge.embeddings import describe_embeddings
    from shared.knowledge.vectors import get_vector_store

    return f"{describe_embeddings()}; {get_vector_store().health()}"


def check_llm() -> str:
    """Which model providers are configured (from the registry); not a network call, a probe spends no tokens."""
    from shared.llm.registry import PROVIDERS, is_configured, model_providers

    settings = get_settings()
    keyed = [name for name in model_providers() if is_configured(name, settings)]
    if not keyed:
        return "no model key: offline answerer"
    missing = [f"{name} ({PROVIDERS[name].variables()})" for name in model_providers() if name not in keyed]
    return "configured: " + ", ".join(keyed) + ("; not configured: " + ", ".join(missing) if missing else "")


CHECKS: dict[str, Callable[[], str]] = {
    "db": check_db, "redis": check_redis, "queue": check_queue, "vectors": check_vectors, "llm": check_llm,
}


def run_checks(names: list[str] | None = None) -> dict[str, Any]:
    """{"status": "ok"|"degraded"|"down", "checks": {name: {status, latency_ms, required, detail}}}."""
    results: dict[str, dict[str, Any]] = {}
    for name in names or list(CHECKS):
        start = time.perf_counter()
        try:
            detail, status = CHECKS[name](), "ok"
        except LookupError as exc:
            detail, status = str(exc), "not_configured"
        except Exception as exc:
            detail, status = _describe(exc), "down"
        results[name] = {"status": status, "required": name in REQUIRED, "detail": detail,
                         "latency_ms": round((time.perf_counter() - start) * 1000, 2)}
    failing = [n for n, r in results.items() if r["required"] and r["status"] != "ok"]
    degraded = [n for n, r in results.items() if not r["required"] and r["status"] == "down"]
    overall = "down" if failing else ("degraded" if degraded else "ok")
    return {"status": overall, "failing": failing + degraded, "checks": results}


def _describe(exc: Exception) -> str:
    # Our errors carry a safe message; anything else is named by type only (it may hold a URL with a password).
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else type(exc).__name__
