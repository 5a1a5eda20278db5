"""Read a sitemap (XML, gzip, sitemap index or plain text list) into page URLs, through the SSRF guard."""

from __future__ import annotations

import gzip
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from shared.knowledge.crawl import CrawlError
from shared.knowledge.crawl.fetch import get, new_client
from shared.knowledge.crawl.scope import normalize_url

MAX_SITEMAPS = 50                 # sitemap index entries followed, in total
MAX_SITEMAP_BYTES = 20_000_000    # compressed or not; sitemaps.org caps one file at 50 MB uncompressed
MAX_URLS = 50_000


@dataclass
class Listing:
    """The pages a sitemap lists; `problem` says why the listing may be incomplete (a child sitemap failed)."""

    urls: list[str]
    problem: str | None = None


def read_sitemap(url: str, limit: int = MAX_URLS) -> Listing:
    """The sitemap at `url` (following a sitemap index): CrawlError when it cannot be read; a child sitemap
    that fails is skipped and named in `problem`, so the listing is not taken as complete."""
    queue = [url]
    pages: list[str] = []
    seen_maps: set[str] = set()
    seen: set[str] = set()
    problem = None
    with new_client() as client:
        while queue and len(seen_maps) < MAX_SITEMAPS and len(pages) < limit:
            current = queue.pop(0)
            if current in seen_maps:
                continue
            seen_maps.add(current)
            try:
                body = _unzip(get(client, current, max_bytes=MAX_SITEMAP_BYTES).body)
                children, locs = parse_sitemap(body)
            except CrawlError as exc:
                if current == url:
                    raise  # the sitemap the user gave must work
                problem = problem or f"the sitemap {current} could not be read: {exc}"
                continue
            queue.extend(c for c in children if c not in seen_maps)
            for loc in locs:
                normal = normalize_url(loc)
                if normal not in seen and normal.startswith(("http://", "https://")):
                    seen.add(normal)
                    pages.append(normal)
    return Listing(pages[:limit], problem)


def _unzip(body: bytes) -> bytes:
    if not body.startswith(b"\x1f\x8b"):
        return body
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as stream:
            data = stream.read(MAX_SITEMAP_BYTES * 3 + 1)  # a bounded read: no decompression bomb
    except (OSError, EOFError):
        raise CrawlError("unreadable_sitemap", "The sitemap is not valid gzip.") from None
    if len(data) > MAX_SITEMAP_BYTES * 3:
        raise CrawlError("too_large", "The sitemap is too large once decompressed.")
    return data


def parse_sitemap(body: bytes) -> tuple[list[str], list[str]]:
    """(child sitemaps, page URLs) of one sitemap file; a text sitemap is one URL per line."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        text = body.decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines()]
        if text.lstrip().startswith("<"):
            raise CrawlError("unreadable_sitemap", "The sitemap is not well-formed XML.") from None
        return [], [line for line in lines if line.startswith(("http://", "https://"))][:MAX_URLS]
    children: list[str] = []
    pages: list[str] = []
    for entry in root:
        kind = _local(entry.tag)
        if kind not in ("url", "sitemap"):
            continue
        # Only the entry's own <loc>: image and video extensions nest <image:loc> inside <url>.
        loc = next(((c.text or "").strip() for c in entry if _local(c.tag) == "loc" and (c.text or "").strip()),
                   None)
        if loc:
            (children if kind == "sitemap" else pages).append(loc)
    return children, pages[:MAX_URLS]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()
