"""RSS and Atom feeds (`feed`): each entry's link becomes a page, fetched and indexed like a `url` source.

A sync reads the feed at the source's url (RSS 2.0, RSS 1.0/RDF or Atom), keeps the entry links the include/
exclude patterns and robots.txt allow, up to `limit`, and queues one page job per link. An entry that left
the feed is removed at the next sync, as a page missing from a sitemap is; a re-sync schedule
(sync_interval_hours) keeps the assistant current with the feed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urljoin

from shared.core.db import Row
from shared.knowledge import SourceKind
from shared.knowledge.crawl import CrawlError
from shared.knowledge.crawl.scope import normalize_url
from shared.knowledge.web import fetch, queue_pages, scope

MAX_FEED_BYTES = 10_000_000


def entry_links(body: bytes, base: str) -> list[str]:
    """The entries' page links, in feed order, absolute; CrawlError when the body is not an RSS or Atom feed."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise CrawlError("unreadable_feed", "The feed is not well-formed XML.") from None
    tag = _local(root.tag)
    if tag not in ("rss", "rdf", "feed"):
        raise CrawlError("unreadable_feed", f"The document is not an RSS or Atom feed (its root is <{tag}>).")
    links = []
    for entry in root.iter():
        if _local(entry.tag) in ("item", "entry"):
            link = _entry_link(entry)
            if link:
                links.append(normalize_url(urljoin(base, link)))
    return [u for u in dict.fromkeys(links) if u.startswith(("http://", "https://"))]


def _entry_link(entry: ET.Element) -> str | None:
    # RSS: <link>url</link> (else a permalink <guid>); Atom: <link href> with rel "alternate" or none.
    for child in entry:
        name = _local(child.tag)
        if name == "link" and child.get("href") is not None:
            if child.get("rel", "alternate") == "alternate":
                return child.get("href", "").strip() or None
        elif name == "link" and (child.text or "").strip():
            return (child.text or "").strip()
    for child in entry:
        if _local(child.tag) == "guid" and child.get("isPermaLink", "true") == "true" and (child.text or "").strip():
            return (child.text or "").strip()
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def start_feed(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    from shared.knowledge.crawl.fetch import allowed_urls, get, new_client

    with new_client() as client:
        fetched = get(client, source["url"], max_bytes=MAX_FEED_BYTES)
    within, limit = scope(source), FEED.page_limit(source["config"])
    links = [u for u in entry_links(fetched.body, fetched.url) if within.matches(u)]
    # robots.txt before the cut, so `limit` counts pages we may fetch (bounded as a sitemap's listing is).
    return queue_pages(conn, source, generation, allowed_urls(links[:limit * 4])[:limit])


FEED = SourceKind("feed", "An RSS or Atom feed at the url: each entry's link is a page (limit, include/exclude "
                          "paths).", "url", start_feed, fetch, settings=("limit", "include_paths", "exclude_paths"))
KINDS = (FEED,)
