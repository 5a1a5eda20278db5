"""include_paths / exclude_paths run on a linear-time matcher (RE2): a pattern that backtracks
catastrophically in Python's `re` answers at once against paths the crawled site chooses, and a pattern
RE2 cannot compile is refused with a 422 naming the field."""
# ruff: noqa: F811  (pytest fixtures are imported by name and then requested as arguments)

from __future__ import annotations

import pytest

from shared.crawl.scope import Scope
from tests.fakes.crawl_fixtures import add_source, knowledge_setup, site, wait_synced  # noqa: F401
from tests.fakes.site_server import html

EVIL = r"^/(a+)+$"
ADVERSARIAL = "/" + "a" * 40 + "b"  # backtracking tries every split of the a's: about 2^40 steps


@pytest.mark.timeout(10)  # Python's re never returns on this
def test_a_backtracking_pattern_answers_at_once_on_an_adversarial_path() -> None:
    scope = Scope("https://acme.test/", include=[], exclude=[EVIL])
    assert scope.allows(f"https://acme.test{ADVERSARIAL}")   # not excluded: the pattern does not match
    assert not scope.allows("https://acme.test/aaaa")         # excluded: it does
    only = Scope("https://acme.test/", include=[EVIL, r"(x+x+)+y"])
    assert not only.matches(f"https://acme.test{ADVERSARIAL}?{'x' * 40}")
    assert only.matches("https://acme.test/aa")


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
