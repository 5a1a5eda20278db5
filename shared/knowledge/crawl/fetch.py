"""The built-in fetcher: httpx through the SSRF guard, redirects one checked hop at a time, robots.txt,
timeouts, a size cap and a content-type allow list. Used when no FIRECRAWL_API_KEY is set."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from shared.knowledge.crawl import USER_AGENT, CrawlError, Page
from shared.knowledge.crawl.ssrf import check_url, guarded_transport

log = logging.getLogger("dialog_engine.crawl")

MAX_REDIRECTS = 5
MAX_PAGE_BYTES = 15_000_000
MAX_ROBOTS_BYTES = 512_000
ROBOTS_TTL_S = 3600
ROBOTS_AGENT = "DialogEngineBot"
REDIRECTS = (301, 302, 303, 307, 308)
# What we can turn into text; anything else is refused before its body is read.
CONTENT_KINDS = {"text/html": "html", "application/xhtml+xml": "html", "text/plain": "text",
                 "text/markdown": "markdown", "text/x-markdown": "markdown", "application/pdf": "pdf"}


@dataclass
class Fetched:
    url: str            # after redirects
    status: int
    content_type: str   # media type only, lower case
    charset: str | None
    body: bytes


def timeout() -> httpx.Timeout:
    """CRAWL_TIMEOUT_S per read (20 s by default), connecting at most 10 s of it."""
    from shared.core.settings import get_settings

    seconds = get_settings().crawl_timeout_s
    return httpx.Timeout(seconds, connect=min(10.0, seconds))


def new_client() -> httpx.Client:
    return httpx.Client(transport=guarded_transport(), timeout=timeout(), follow_redirects=False,
                        headers={"User-Agent": f"{USER_AGENT} (+knowledge crawler)"})


def get(client: httpx.Client, url: str, *, max_bytes: int = MAX_PAGE_BYTES,
        kinds: dict[str, str] | None = None) -> Fetched:
    """GET `url`, following redirects by hand so every hop passes the SSRF check; CrawlError on failure.

    `kinds`: allowed media types; others fail with unsupported_content_type before the body is read.
    """
    for _ in range(MAX_REDIRECTS + 1):
        check_url(url)
        try:
            with client.stream("GET", url) as reply:
                if reply.status_code in REDIRECTS and reply.headers.get("location"):
                    url = urljoin(url, reply.headers["location"].strip())
                    continue
                _check_status(reply.status_code, url)
                media, charset = _media_type(reply.headers.get("content-type", ""))
                if kinds is not None and media and media not in kinds:
                    raise CrawlError("unsupported_content_type",
                                     f"{url} is {media}; only HTML, text, markdown and PDF pages are read.")
                return Fetched(url, reply.status_code, media, charset, _read_limited(reply, max_bytes, url))
        except httpx.TimeoutException:
            raise CrawlError("timeout", f"{url} did not answer in time.", retryable=True) from None
        except httpx.HTTPError as exc:
            raise CrawlError("connection_failed", f"{url} could not be reached ({type(exc).__name__}).",
                             retryable=True) from None
    raise CrawlError("too_many_redirects", f"{url} redirected more than {MAX_REDIRECTS} times.")


def _check_status(status: int, url: str) -> None:
    if 200 <= status < 300:
        return
    if status in (404, 410):
        raise CrawlError("not_found", f"{url} answered {status}: the page does not exist (any more).")
    if status in (401, 403):
        raise CrawlError("access_denied", f"{url} answered {status}: the page is not public.")
    if status == 429 or status >= 500:
        raise CrawlError("server_error" if status >= 500 else "rate_limited", f"{url} answered {status}.",
                         retryable=True)
    raise CrawlError("http_error", f"{url} answered {status}.")


def _media_type(header: str) -> tuple[str, str | None]:
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip("\"' ").lower()
    return media.strip().lower(), charset


def _read_limited(reply: httpx.Response, max_bytes: int, url: str) -> bytes:
    declared = reply.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise CrawlError("too_large", f"{url} is {int(declared)} bytes; the limit is {max_bytes}.")
    body = bytearray()
    for part in reply.iter_bytes():
        body += part
        if len(body) > max_bytes:
            raise CrawlError("too_large", f"{url} is larger than the limit of {max_bytes} bytes.")
    return bytes(body)


def robots_allows(client: httpx.Client, url: str) -> bool:
    """robots.txt of the URL's origin allows us (cached in Redis for an hour when Redis is there)."""
    return bool(robots_filter(client, [url]))


def robots_filter(client: httpx.Client, urls: list[str]) -> list[str]:
    """The URLs robots.txt allows us to fetch (one robots.txt read per origin)."""
    parsers: dict[str, RobotFileParser] = {}
    allowed = []
    for url in urls:
        parts = urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        if origin not in parsers:
            parsers[origin] = RobotFileParser()
            parsers[origin].parse(_robots_text(client, origin).splitlines())
        if parsers[origin].can_fetch(ROBOTS_AGENT, url):
            allowed.append(url)
    return allowed


def allowed_urls(urls: list[str]) -> list[str]:
    """`urls` without those robots.txt disallows, so discovery never queues a page it may not fetch."""
    if not urls:
        return []
    with new_client() as client:
        return robots_filter(client, urls)


def _robots_text(client: httpx.Client, origin: str) -> str:
    key = "robots:" + hashlib.sha256(origin.encode()).hexdigest()[:32]
    from shared.core.kv import optional_kv

    kv = optional_kv()  # no Redis configured: fetch robots.txt every time
    if kv is not None:
        try:
            cached = kv.get(key)
            if cached is not None:
                return cached
        except Exception as exc:  # the cache only saves a request
            log.warning("robots cache read failed: %s", type(exc).__name__)
    try:
        reply = get(client, f"{origin}/robots.txt", max_bytes=MAX_ROBOTS_BYTES)
        text = reply.body.decode("utf-8", "replace")
    except CrawlError as exc:
        # Like urllib.robotparser: 401/403 forbid everything; a missing or broken robots.txt allows all.
        text = "User-agent: *\nDisallow: /\n" if exc.code == "access_denied" else ""
        if exc.retryable:
            return text  # don't cache a transient failure
    if kv is not None:
        try:
            kv.set(key, text, ttl=ROBOTS_TTL_S)
        except Exception as exc:  # the cache only saves a request
            log.warning("robots cache write failed: %s", type(exc).__name__)
    return text




def fetch_page(url: str) -> Page:
    """Fetch one page (robots.txt honoured) and clean it to markdown, with its links when it is HTML."""
    from shared.knowledge.crawl.extract import to_page

    with new_client() as client:
        if not robots_allows(client, url):
            raise CrawlError("blocked_by_robots", f"robots.txt of {urlsplit(url).netloc} does not allow {url}.")
        fetched = get(client, url, kinds=CONTENT_KINDS)
    kind = CONTENT_KINDS.get(fetched.content_type) or sniff(fetched.body)
    return to_page(kind, fetched.body, fetched.url, fetched.charset)


def sniff(body: bytes) -> str:
    """The kind of a body served without a content type."""
    head = body[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return "html"
    return "text"
