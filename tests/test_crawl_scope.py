"""include_paths / exclude_paths run on a linear-time matcher (RE2): a pattern that backtracks
catastrophically in Python's `re` answers at once against paths the crawled site chooses, and a pattern
RE2 cannot compile is refused with a 422 naming the field."""

from __future__ import annotations

from tests.fakes.crawl_fixtures import add_source, knowledge_setup, wait_synced
from tests.fakes.site_server import html
from tests.unit.test_crawl_scope import ADVERSARIAL, EVIL


def test_a_site_crawl_with_that_pattern_finishes(engine, site) -> None:
    site.pages["/"] = ("text/html", html("Home", "<p>Start here.</p>", [ADVERSARIAL, "/aaaa"]))
    site.pages[ADVERSARIAL] = ("text/html", html("Long path", "<p>A page with a long name.</p>"))
    site.pages["/aaaa"] = ("text/html", html("Skipped", "<p>Excluded by the pattern.</p>"))
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/",
                                                    exclude_paths=[EVIL])["id"], timeout=20)
    assert source["status"] == "ready" and source["pages_done"] == 2
    assert site.hits[ADVERSARIAL] == 1 and site.hits["/aaaa"] == 0


def test_patterns_re2_cannot_compile_get_a_422_naming_the_field(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    refused = {
        "include_paths": ["(?<=docs)/faq"],   # lookbehind
        "exclude_paths": [r"/(\w+)/\1"],       # backreference
    }
    for field, patterns in refused.items():
        reply = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "site",
                                                  "url": f"{site.url}/", field: patterns})
        assert reply.status_code == 422, reply.text
        error = reply.json()["error"]
        assert [d["field"] for d in error["details"]] == [field] and "RE2" in error["message"], error
    source = add_source(client, assistant_id, kind="site", url=f"{site.url}/", include_paths=["^/docs/"])
    reply = client.patch(f"/api/sources/{source['id']}", json={"exclude_paths": ["(unclosed"]})
    assert reply.status_code == 422 and reply.json()["error"]["details"][0]["field"] == "exclude_paths"
    assert client.get(f"/api/sources/{source['id']}").json()["config"]["exclude_paths"] == []
