"""Crawling: the SSRF guard, the built-in fetcher, Firecrawl, and the ingestion pipeline's shared steps."""

from __future__ import annotations

from dataclasses import dataclass, field

USER_AGENT = "DialogEngineBot/1.0"


class CrawlError(Exception):
    """A page could not be fetched or read.

    `code` is stable and machine-readable (shown per page); `retryable` says whether a later try may
    succeed (timeouts, 5xx, 429) or not (404, robots.txt, a private address, an unsupported type).
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Page:
    """One fetched page, cleaned to markdown; `links` are absolute URLs found on it (HTML only)."""

    url: str
    title: str
    markdown: str
    links: list[str] = field(default_factory=list)
