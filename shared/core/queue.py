"""QStash: publish a job to /api/jobs/{name} and verify a delivery's signature."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from shared.core.errors import ServiceUnavailable, Unauthorized
from shared.core.settings import get_settings

log = logging.getLogger("dialog_engine.queue")


@lru_cache
def _client() -> Any:
    from qstash import QStash

    settings = get_settings()
    if not settings.qstash_token:
        raise ServiceUnavailable("Set QSTASH_TOKEN to run background jobs.", code="queue_not_configured")
    return QStash(settings.qstash_token, base_url=settings.qstash_url or None)


def job_url(name: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}/api/jobs/{name}"


def publish(name: str, payload: dict[str, Any], *, dedup_id: str | None = None, delay: str | int | None = None,
            retries: int | None = None) -> str:
    """Queue `functions/{name}.run(payload)`; returns the QStash message id.

    `dedup_id`: QStash drops a second publish with the same id (for about 10 minutes);
    `delay`: "30s", "5m" or seconds; `retries`: deliveries after the first failure (QStash default 3).
    """
    try:
        reply = _client().message.publish_json(url=job_url(name), body=payload, deduplication_id=dedup_id,
                                               delay=delay, retries=retries)
    except ServiceUnavailable:
        raise
    except Exception as exc:
        log.error("publishing job %s failed: %s", name, type(exc).__name__)
        raise ServiceUnavailable("The job queue is unreachable; try again shortly.", code="queue_unavailable") from exc
    return reply.message_id


def verify(signature: str | None, body: bytes, url: str) -> None:
    """Raise Unauthorized unless `signature` is a valid, unexpired QStash JWT for this URL and raw body."""
    from qstash import Receiver

    settings = get_settings()
    if not signature:
        raise Unauthorized("Missing Upstash-Signature header.", code="missing_signature")
    if not (settings.qstash_current_signing_key and settings.qstash_next_signing_key):
        raise ServiceUnavailable("Set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY.",
                                 code="queue_not_configured")
    receiver = Receiver(settings.qstash_current_signing_key, settings.qstash_next_signing_key)
    try:
        # The receiver hashes body.encode(): decode losslessly so the hash is of the exact bytes sent.
        receiver.verify(signature=signature, body=body.decode("utf-8", "surrogateescape"), url=url)
    except Exception as exc:
        raise Unauthorized("The QStash signature is not valid.", code="invalid_signature",
                           details={"reason": _reason(exc)}) from exc


def _reason(exc: Exception) -> str:
    text = str(exc)
    # Keep the reason short and free of hashes: "expired", "invalid subject", ...
    for word in ("expired", "subject", "body hash", "decoding"):
        if word in text.lower():
            return word
    return "invalid"

