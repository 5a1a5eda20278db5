"""Feed sources (shared/knowledge/feed.py): an RSS or Atom feed served by the test site; each entry's link is
a page. Also what the source-kind registry drives: the kinds route, the database's kind check, the sweeper."""

from __future__ import annotations

import psycopg
import pytest

from shared.core.queue import publish
from shared.knowledge import registry
from shared.knowledge.crawl import CrawlError
from shared.knowledge.feed import entry_links
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced


def rss(base: str, paths: list[str]) -> str:
    items = "".join(f"<item><title>Post {p}</title><link>{base}{p}</link><description>Summary</description></item>"
                    for p in paths)
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Acme news</title><link>{base}/</link>'
            f'<atom:link xmlns:atom="http://www.w3.org/2005/Atom" rel="self" href="{base}/feed.xml"/>{items}'
            "</channel></rss>")


def atom(paths: list[str]) -> str:
    # Relative links resolve against the feed's URL; an enclosure is not the entry's page.
    entries = "".join(f'<entry><title>{p}</title><link rel="enclosure" href="/logo.png"/>'
                      f'<link href="{p}"/><id>urn:{p}</id></entry>' for p in paths)
    return f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">{entries}</feed>'


def page_paths(engine, source_id: str, base: str) -> set[str]:
    with engine.db() as conn:
        rows = conn.execute("SELECT url FROM documents WHERE source_id = %s", (source_id,)).fetchall()
    return {r["url"].removeprefix(base) for r in rows}


def test_each_rss_entry_becomes_a_page_and_robots_txt_is_honoured(engine, site) -> None:
    site.pages["/feed.xml"] = ("application/rss+xml", rss(site.url, ["/pricing", "/docs/faq", "/private/admin"]))
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="feed", url=f"{site.url}/feed.xml",
                                                    sync_interval_hours=6)["id"])
    assert source["status"] == "ready", source
    assert page_paths(engine, source["id"], site.url) == {"/pricing", "/docs/faq"}
    assert site.hits["/private/admin"] == 0
    chunks = chunk_rows(engine, source["id"])
    # Each page is cited by its own title and URL, as a url source's page is.
    assert any("10 euros" in c["text"] and c["title"] == "Pricing" and c["url"] == f"{site.url}/pricing"
               for c in chunks)


def test_an_atom_feed_keeps_to_the_limit_and_the_patterns(engine, site) -> None:
    site.pages["/blog/atom"] = ("application/atom+xml", atom(["/about", "/pricing", "/docs/install", "/docs/faq"]))
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="feed", url=f"{site.url}/blog/atom",
                                                    limit=2, exclude_paths=["^/about"])["id"])
    assert source["status"] == "ready" and source["pages_found"] == 2
    assert page_paths(engine, source["id"], site.url) == {"/pricing", "/docs/install"}
    assert site.hits["/logo.png"] == 0


def test_an_entry_that_left_the_feed_is_removed_at_the_next_sync(engine, site) -> None:
    site.pages["/feed.xml"] = ("application/rss+xml", rss(site.url, ["/pricing", "/about"]))
    client, _, assistant_id = knowledge_setup(engine)
    added = add_source(client, assistant_id, kind="feed", url=f"{site.url}/feed.xml")
    source = wait_synced(engine, client, added["id"])
    assert source["pages_done"] == 2
    site.pages["/feed.xml"] = ("application/rss+xml", rss(site.url, ["/pricing", "/docs/faq"]))
    assert client.post(f"/api/sources/{source['id']}/resync").status_code == 202
    source = wait_synced(engine, client, source["id"])
    assert source["status"] == "ready" and source["pages_removed"] == 1
    assert page_paths(engine, source["id"], site.url) == {"/pricing", "/docs/faq"}
    assert not any("1949" in c["text"] for c in chunk_rows(engine, source["id"]))


def test_a_page_that_is_not_a_feed_fails_the_source_with_its_reason(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="feed", url=f"{site.url}/pricing")["id"])
    assert source["status"] == "failed" and source["error"].startswith("unreadable_feed"), source
    refused = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "feed"})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "url"


def test_entry_links_read_rss_1_rss_2_and_atom() -> None:
    rdf = ('<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
           '<channel><link>https://a.example/</link></channel>'
           '<item><link>https://a.example/one</link></item><item><link>https://a.example/one</link></item></rdf:RDF>')
    assert entry_links(rdf.encode(), "https://a.example/feed") == ["https://a.example/one"]
    guid = ('<rss><channel><item><guid>https://a.example/p?id=2#top</guid></item>'
            '<item><guid isPermaLink="false">tag:x</guid></item></channel></rss>')
    assert entry_links(guid.encode(), "https://a.example/feed") == ["https://a.example/p?id=2"]
    assert entry_links(atom(["/x"]).encode(), "https://b.example/blog/atom") == ["https://b.example/x"]
    for body in (b"<html><body>no</body></html>", b"<rss><unclosed"):
        with pytest.raises(CrawlError) as refused:
            entry_links(body, "https://a.example/")
        assert refused.value.code == "unreadable_feed"


def test_the_kinds_route_lists_the_registry_and_the_database_refuses_unknown_kinds(engine) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    listed = client.get("/api/sources/kinds").json()
    assert [k["name"] for k in listed["data"]] == list(registry())
    feed = next(k for k in listed["data"] if k["name"] == "feed")
    assert feed["input"] == "url" and feed["web"]
    assert "limit" in feed["settings"] and "max_depth" not in feed["settings"]
    bogus = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "podcast", "url": "https://x.y/"})
    assert bogus.status_code == 422
    with engine.db() as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO sources (workspace_id, assistant_id, kind) VALUES (%s, %s, 'podcast')",
                     (workspace_id, assistant_id))


def test_the_sweeper_resumes_a_stalled_text_source_by_indexing_its_content_again(engine) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="text", title="Hours",
                                                    content="The shop opens at nine.")["id"])
    # A resync whose page job was lost: the page is pending, nothing moved for 40 minutes.
    with engine.db() as conn:
        conn.execute("""UPDATE sources SET sync_generation = 2, status = 'indexing',
                            updated_at = now() - interval '40 minutes' WHERE id = %s""", (source["id"],))
        conn.execute("UPDATE documents SET sync_generation = 2, status = 'pending', attempts = 0 WHERE source_id = %s",
                     (source["id"],))
    publish("resync_due", {"cron": "resync"})
    source = wait_synced(engine, client, source["id"])
    # Its content is stored with it: there is no page to fetch, so the sweeper indexes it again.
    assert source["status"] == "ready" and source["pages_done"] == 1 and source["pages_failed"] == 0, source
    assert any("nine" in c["text"] for c in chunk_rows(engine, source["id"]))


def test_a_kind_deployed_before_db_migrate_says_to_run_it(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    with engine.db() as conn:  # as if the code with the new kind shipped before its migration step ran
        conn.execute("DELETE FROM source_kinds WHERE name = 'feed'")
    reply = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "feed",
                                              "url": f"{site.url}/feed.xml"})
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "migration_pending"
    assert "db migrate" in reply.json()["error"]["message"]
