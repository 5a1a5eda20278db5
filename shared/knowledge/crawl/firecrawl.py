"""Firecrawl through firecrawl-py (imported on first use): scrape one page, start and read an async crawl
with a webhook, cancel it, and verify the webhook's X-Firecrawl-Signature. Active when FIRECRAWL_API_KEY is set."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from shared.core.settings import get_settings
from shared.knowledge.crawl import CrawlError, Page

log = logging.getLogger("dialog_engine.crawl")

DEFAULT_API_URL = "https://api.firecrawl.dev"
POLL_DELAY_S = 30  # between status polls of a crawl; the webhook usually makes polling unnecessary
WEBHOOK_EVENTS = ["page", "completed", "failed"]
RETRYABLE_ERRORS = {"RateLimitError", "InternalServerError", "RequestTimeoutError", "ConnectionError", "Timeout",
                    "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError"}


def enabled() -> bool:
    return bool(get_settings().firecrawl_api_key)


def _client() -> Any:
    from firecrawl import Firecrawl

    settings = get_settings()
    return Firecrawl(api_key=settings.firecrawl_api_key, api_url=settings.firecrawl_api_url or DEFAULT_API_URL,
                     timeout=90, max_retries=3)


def _error(exc: Exception, what: str) -> CrawlError:
    name = type(exc).__name__
    retryable = name in RETRYABLE_ERRORS or getattr(exc, "status_code", 0) in (408, 429, 500, 502, 503, 504)
    return CrawlError("firecrawl_error", f"Firecrawl could not {what} ({name}: {str(exc)[:200]}).",
                      retryable=retryable)


def scrape(url: str) -> Page:
    """One page as markdown. The SSRF check runs here too: Firecrawl must not be pointed inside our network."""
    from shared.knowledge.crawl.ssrf import check_url  # loads httpx/httpcore, which the webhook route doesn't need

    check_url(url)
    try:
        document = _client().scrape(url, formats=["markdown"], only_main_content=True)
    except Exception as exc:  # the SDK raises many types; all become a CrawlError
        raise _error(exc, f"scrape {url}") from None
    return page_from_document(document, url)


def page_from_document(document: Any, fallback_url: str = "") -> Page:
    """A Page from an SDK Document or a raw webhook/status dict; CrawlError when the site answered an error."""
    if isinstance(document, dict):
        meta = document.get("metadata") or {}
        markdown = document.get("markdown") or ""
        url = meta.get("sourceURL") or meta.get("url") or fallback_url
        status, title = meta.get("statusCode"), meta.get("title") or meta.get("ogTitle")
        error = meta.get("error")
    else:
        meta = document.metadata_typed
        markdown = document.markdown or ""
        url = meta.source_url or meta.url or fallback_url
        status, title, error = meta.status_code, meta.title or meta.og_title, meta.error
    if isinstance(title, list):
        title = title[0] if title else ""
    status = int(str(status)) if str(status or "").isdigit() else None
    if status in (404, 410):
        raise CrawlError("not_found", f"{url} answered {status}: the page does not exist (any more).")
    if status and status >= 400:
        raise CrawlError("http_error", f"{url} answered {status}{': ' + str(error)[:200] if error else ''}.",
                         retryable=status == 429 or status >= 500)
    return Page(url=url, title=str(title or "")[:300], markdown=markdown)


def start_crawl(*, url: str, limit: int, include: list[str], exclude: list[str], max_depth: int,
                webhook_url: str, metadata: dict[str, str]) -> str:
    """Start an async crawl that reports each page to `webhook_url`; returns Firecrawl's crawl id."""
    from firecrawl.v2.types import ScrapeOptions, WebhookConfig

    from shared.knowledge.crawl.ssrf import check_url

    check_url(url)
    try:
        reply = _client().start_crawl(
            url, limit=limit, include_paths=include or None, exclude_paths=exclude or None,
            max_discovery_depth=max_depth, scrape_options=ScrapeOptions(formats=["markdown"], only_main_content=True),
            webhook=WebhookConfig(url=webhook_url, metadata=metadata, events=WEBHOOK_EVENTS))  # type: ignore[arg-type]
    except Exception as exc:  # the SDK raises many types; all become a CrawlError
        raise _error(exc, f"start a crawl of {url}") from None
    return str(reply.id)


def crawl_status(crawl_id: str) -> tuple[str, list[Any]]:
    """(status, documents so far): status is scraping, completed, failed or cancelled."""
    try:
        job = _client().get_crawl_status(crawl_id)
    except Exception as exc:  # the SDK raises many types; all become a CrawlError
        raise _error(exc, f"read crawl {crawl_id}") from None
    return str(job.status), list(job.data or [])


def cancel(crawl_id: str) -> None:
    """Stop a crawl nobody needs any more; failures are only logged."""
    try:
        _client().cancel_crawl(crawl_id)
    except Exception as exc:  # best effort: the crawl ends by itself
        log.warning("cancelling Firecrawl crawl %s failed: %s", crawl_id, type(exc).__name__)


def signature_valid(raw_body: bytes, header: str | None, secret: str) -> bool:
    """X-Firecrawl-Signature is "sha256=<hex HMAC-SHA256 of the raw body>"; compared in constant time."""
    if not header:
        return False
    sent = header.strip()
    sent = sent.split("=", 1)[1] if sent.lower().startswith("sha256=") else sent
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sent.lower(), expected)
