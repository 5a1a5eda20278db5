"""Reading the page lists a site publishes: sitemaps (XML, sitemap index, plain text) and RSS/Atom feeds."""

from __future__ import annotations

import pytest

from shared.knowledge.crawl import CrawlError
from shared.knowledge.crawl.scope import normalize_url
from shared.knowledge.crawl.sitemap import MAX_URLS, parse_sitemap
from shared.knowledge.feed import entry_links

URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc> https://docs.example/a </loc><lastmod>2024-01-01</lastmod></url>
  <url><image:image><image:loc>https://cdn.example/a.png</image:loc></image:image><loc>https://docs.example/b</loc></url>
  <url><loc></loc></url>
  <other><loc>https://docs.example/not-a-url-entry</loc></other>
</urlset>"""

INDEX = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://docs.example/sitemap-1.xml</loc></sitemap>
  <sitemap><loc>https://docs.example/sitemap-2.xml.gz</loc></sitemap>
</sitemapindex>"""


def test_a_urlset_lists_each_entrys_own_loc_only() -> None:
    # Image extensions nest <image:loc> inside <url>: not a page.
    assert parse_sitemap(URLSET) == ([], ["https://docs.example/a", "https://docs.example/b"])


def test_a_sitemap_index_lists_child_sitemaps() -> None:
    assert parse_sitemap(INDEX) == (["https://docs.example/sitemap-1.xml", "https://docs.example/sitemap-2.xml.gz"], [])


def test_a_text_sitemap_is_one_url_per_line() -> None:
    body = b"https://docs.example/a\n\n  http://docs.example/b  \nftp://docs.example/c\n# a comment\n"
    assert parse_sitemap(body) == ([], ["https://docs.example/a", "http://docs.example/b"])


def test_broken_xml_is_refused_rather_than_read_as_text() -> None:
    with pytest.raises(CrawlError) as refused:
        parse_sitemap(b"<urlset><url><loc>https://docs.example/a</loc></url>")
    assert refused.value.code == "unreadable_sitemap"


def test_a_huge_sitemap_is_cut_at_the_url_limit() -> None:
    body = "\n".join(f"https://docs.example/{n}" for n in range(MAX_URLS + 10)).encode()
    assert len(parse_sitemap(body)[1]) == MAX_URLS


def test_urls_get_one_spelling_per_page() -> None:
    assert normalize_url(" HTTPS://Docs.Example:443/Guide?x=1#part ") == "https://docs.example/Guide?x=1"
    assert normalize_url("http://docs.example:80") == "http://docs.example/"
    assert normalize_url("http://docs.example:8080/a") == "http://docs.example:8080/a"
    assert normalize_url("http://[::1]:8000/a") == "http://[::1]:8000/a"


RSS = b"""<rss version="2.0"><channel><title>News</title>
  <item><title>One</title><link>https://blog.example/one</link></item>
  <item><title>Two</title><link>/two</link></item>
  <item><title>Three</title><guid isPermaLink="true">https://blog.example/three</guid></item>
  <item><title>Not a link</title><guid isPermaLink="false">tag:blog.example,2024:4</guid></item>
  <item><title>Again</title><link>https://blog.example/one#comments</link></item>
</channel></rss>"""

ATOM = b"""<feed xmlns="http://www.w3.org/2005/Atom"><title>News</title>
  <entry><link rel="self" href="https://blog.example/api/1"/><link href="https://blog.example/1"/></entry>
  <entry><link rel="alternate" href="2"/></entry>
  <entry><link rel="enclosure" href="https://blog.example/podcast.mp3"/></entry>
</feed>"""


def test_rss_entries_give_their_links_absolute_and_once() -> None:
    assert entry_links(RSS, "https://blog.example/feed.xml") == [
        "https://blog.example/one", "https://blog.example/two", "https://blog.example/three"]


def test_atom_entries_give_their_alternate_link() -> None:
    assert entry_links(ATOM, "https://blog.example/posts/feed") == [
        "https://blog.example/1", "https://blog.example/posts/2"]


@pytest.mark.parametrize("body", [b"<html><body>Not a feed</body></html>", b"{\"items\": []}"])
def test_a_document_that_is_not_a_feed_is_refused(body: bytes) -> None:
    with pytest.raises(CrawlError) as refused:
        entry_links(body, "https://blog.example/feed")
    assert refused.value.code == "unreadable_feed"
