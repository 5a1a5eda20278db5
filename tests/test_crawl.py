"""Crawling: the built-in fetcher (robots.txt, scope, depth, limits, sitemaps, content types, timeouts,
redirects) and Firecrawl through firecrawl-py against its stand-in (scrape, crawl with webhook, polling)."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from shared.knowledge.crawl import CrawlError, firecrawl
from shared.knowledge.crawl.fetch import fetch_page, get
from shared.knowledge.crawl.ssrf import guarded_transport
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced
from tests.plugins.stack import clear_caches


def paths(engine, source: dict, base: str) -> set[str]:
    with engine.db() as conn:
        rows = conn.execute("SELECT url FROM documents WHERE source_id = %s", (source["id"],)).fetchall()
    return {r["url"].removeprefix(base) for r in rows}


@pytest.mark.parametrize(("settings", "expected"), [
    ({"include_paths": ["^/docs/"], "exclude_paths": ["faq"]}, {"/", "/docs/", "/docs/install"}),
    ({"max_depth": 1}, {"/", "/pricing", "/docs/", "/about"}),
    ({"max_depth": 0}, {"/"}),
])
def test_site_crawl_keeps_to_patterns_and_depth(engine, site, settings, expected) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/",
                                                    **settings)["id"])
    assert source["status"] == "ready"
    assert paths(engine, source, site.url) == expected
    assert source["pages_found"] == len(expected)


def test_site_crawl_stops_at_the_page_limit_and_stays_under_the_start_path(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    limited = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/",
                                                     limit=3)["id"])
    assert limited["status"] == "ready" and limited["pages_found"] == 3 and len(paths(engine, limited, site.url)) == 3
    docs = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/docs/")["id"])
    assert paths(engine, docs, site.url) == {"/docs/", "/docs/install", "/docs/faq", "/docs/manual.pdf"}


def test_sitemap_source_reads_a_gzipped_sitemap_index(engine, site) -> None:
    site.pages["/sitemap.xml"] = ("application/xml", (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f'<sitemap><loc>{site.url}/maps/a.xml.gz</loc></sitemap><sitemap><loc>{site.url}/maps/b.xml</loc>'
        '</sitemap></sitemapindex>'))
    site.pages["/maps/a.xml.gz"] = ("application/gzip",
                                    gzip.compress(site.sitemap_xml(["/pricing", "/about"]).encode()))
    site.pages["/maps/b.xml"] = ("application/xml", site.sitemap_xml(["/docs/faq", "/private/admin",
                                                                      "/pricing"]).replace(site.url, site.url, 1))
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                    url=f"{site.url}/sitemap.xml", exclude_paths=["about"])["id"])
    assert source["status"] == "ready"
    # robots.txt removes /private/, the pattern removes /about, image entries are not pages, no repeats.
    assert paths(engine, source, site.url) == {"/pricing", "/docs/faq"}
    assert site.hits["/private/admin"] == 0 and site.hits["/logo.png"] == 0


def test_a_broken_sitemap_fails_the_source_with_its_reason(engine, site) -> None:
    site.pages["/sitemap.xml"] = ("application/xml", "<urlset><url><loc>unclosed")
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                    url=f"{site.url}/sitemap.xml")["id"])
    assert source["status"] == "failed" and source["error"].startswith("unreadable_sitemap")


def test_content_types_redirects_and_markdown_pages(engine, site) -> None:
    site.pages["/notes.md"] = ("text/markdown", "# Release notes\n\n## Version 2\n\nAdds turbo skates.")
    site.redirects["/old-notes"] = "/notes.md"
    client, _, assistant_id = knowledge_setup(engine)
    notes = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/old-notes")["id"])
    assert notes["status"] == "ready"
    [chunk] = chunk_rows(engine, notes["id"])
    assert chunk["title"] == "Release notes" and chunk["heading_path"] == "Release notes > Version 2"
    assert chunk["url"] == f"{site.url}/old-notes"

    image = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/logo.png")["id"])
    assert image["status"] == "failed" and "All 1 pages failed" in image["error"]
    assert image["failed_pages"][0]["error"].startswith("unsupported_content_type: ")
    assert site.hits["/logo.png"] == 1  # refused on its header, never retried

    blocked = wait_synced(engine, client, add_source(client, assistant_id, kind="url",
                                                     url=f"{site.url}/private/admin")["id"])
    assert blocked["failed_pages"][0]["error"].startswith("blocked_by_robots")
    assert site.hits["/private/admin"] == 0


def test_timeouts_size_limits_and_missing_pages_are_clear_errors(engine, site) -> None:
    site.delays["/slow"] = 1.0
    site.pages["/slow"] = ("text/html", "<p>late</p>")
    with httpx.Client(transport=guarded_transport(), timeout=0.2) as client:
        with pytest.raises(CrawlError) as slow:
            get(client, f"{site.url}/slow")
        with pytest.raises(CrawlError) as big:
            get(client, f"{site.url}/pricing", max_bytes=100)
        with pytest.raises(CrawlError) as missing:
            get(client, f"{site.url}/nope")
    assert (slow.value.code, slow.value.retryable) == ("timeout", True)
    assert (big.value.code, big.value.retryable) == ("too_large", False)
    assert (missing.value.code, missing.value.retryable) == ("not_found", False)
    with pytest.raises(CrawlError) as robots:
        fetch_page(f"{site.url}/private/admin")
    assert robots.value.code == "blocked_by_robots"


def test_firecrawl_scrapes_a_single_url(engine, site, firecrawl_api) -> None:
    url = f"{site.url}/faq-from-firecrawl"
    firecrawl_api.pages[url] = ("Firecrawl FAQ", "# Firecrawl FAQ\n\nJet-powered roller skates ship in March.", 200)
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=url)["id"])
    assert source["status"] == "ready"
    [chunk] = chunk_rows(engine, source["id"])
    assert "Jet-powered" in chunk["text"] and chunk["title"] == "Firecrawl FAQ"
    assert [(kind, u) for kind, u, _ in firecrawl_api.requests] == [("scrape", url)]
    assert site.hits == {}  # the built-in fetcher was not used


def _firecrawl_site(fake, base: str) -> None:
    fake.pages.update({
        f"{base}/": ("Home", "# Home\n\nWelcome to the anvil shop.", 200),
        f"{base}/returns": ("Returns", "# Returns\n\n## Policy\n\nReturn anvils within 60 days.", 200),
        f"{base}/team": ("Team", "# Team\n\nWile E. Coyote leads testing.", 200),
        f"{base}/gone": ("", "", 404),
    })


def test_firecrawl_site_crawl_arrives_by_signed_webhook(engine, site, firecrawl_api, monkeypatch) -> None:
    monkeypatch.setattr(firecrawl, "POLL_DELAY_S", 1)
    monkeypatch.setenv("FIRECRAWL_WEBHOOK_SECRET", "whsec-test")
    clear_caches()
    firecrawl_api.webhook_secret = "whsec-test"
    base = "https://anvils.example"
    _firecrawl_site(firecrawl_api, base)
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = add_source(client, assistant_id, kind="site", url=f"{base}/", limit=10, max_depth=2,
                        include_paths=["^/"], exclude_paths=["^/admin"])
    source = wait_synced(engine, client, source["id"])

    assert source["status"] == "ready", source
    assert firecrawl_api.webhook_replies and set(firecrawl_api.webhook_replies) == {200}
    [(_, _, crawl)] = [r for r in firecrawl_api.requests if r[0] == "crawl"]
    assert crawl["limit"] == 10 and crawl["maxDiscoveryDepth"] == 2 and crawl["excludePaths"] == ["^/admin"]
    assert crawl["webhook"]["url"] == f"{engine.url}/api/webhooks/firecrawl"
    assert crawl["webhook"]["metadata"] == {"source_id": source["id"], "workspace_id": workspace_id,
                                            "generation": "1"}
    assert paths(engine, source, base) == {"/", "/returns", "/team", "/gone"}
    assert source["pages_done"] == 3 and source["failed_pages"][0]["error"].startswith("not_found")
    assert any("60 days" in r["text"] for r in chunk_rows(engine, source["id"]))


def test_firecrawl_polling_finishes_the_crawl_without_webhooks(engine, firecrawl_api, monkeypatch) -> None:
    monkeypatch.setattr(firecrawl, "POLL_DELAY_S", 0)
    firecrawl_api.send_webhooks = False
    firecrawl_api.polls_before_done = 1  # the first poll sees "scraping"
    base = "https://anvils.example"
    _firecrawl_site(firecrawl_api, base)
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{base}/")["id"])
    assert source["status"] == "ready" and source["pages_done"] == 3
    crawl_id = next(iter(firecrawl_api.crawls))
    assert firecrawl_api.crawls[crawl_id]["polls"] == 2  # one "scraping", one "completed" (paginated)


def test_webhook_refuses_bad_signatures_and_ignores_unknown_crawls(engine, firecrawl_api, monkeypatch) -> None:
    monkeypatch.setenv("FIRECRAWL_WEBHOOK_SECRET", "whsec-test")
    clear_caches()
    firecrawl_api.webhook_secret = "whsec-test"
    body, headers = firecrawl_api.event("crawl-1", "crawl.page", [], {"source_id": "src_x", "workspace_id": "ws_x"})
    client = engine.client()
    assert client.post("/api/webhooks/firecrawl", content=body, headers=headers).json() == {"ignored": True}
    forged = {**headers, "x-firecrawl-signature": "sha256=" + "0" * 64}
    reply = client.post("/api/webhooks/firecrawl", content=body, headers=forged)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_signature"
    unsigned = {"content-type": "application/json"}
    assert client.post("/api/webhooks/firecrawl", content=body, headers=unsigned).status_code == 401
    tampered = json.loads(body)
    tampered["data"] = [{"markdown": "evil"}]
    reply = client.post("/api/webhooks/firecrawl", content=json.dumps(tampered), headers=headers)
    assert reply.status_code == 401
