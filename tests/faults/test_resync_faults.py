"""Re-syncs under faults lose no knowledge, and duplicate page deliveries racing each other leave the page
indexed (issue 10, items 1 and 6).

A real site on loopback (tests/fakes/site_server.py) and the Firecrawl stand-in are indexed once, then
re-synced while they fail: down (5xx), timing out, behind 401/403, robots.txt refused, half up, a sitemap
that is down, cut off or has a child sitemap failing, a Firecrawl crawl that breaks off or only sees a 503,
and a sync the hourly sweeper finds abandoned. Every chunk must survive and search must still find it; the
source says what happened (status, error, pages kept/removed/failed) and is retried on the schedule. A page
proved gone (404/410, or missing from a sitemap that was read completely) is removed. One summary line per
scenario prints pages kept/removed and chunks lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from shared.core.queue import job_url, publish
from shared.knowledge.crawl import firecrawl
from shared.knowledge.retrieval import retrieve
from tests.fakes.crawl_fixtures import add_source, knowledge_setup, wait_synced
from tests.plugins.stack import clear_caches

SITE_PAGES = 7  # what a crawl of the test site indexes (tests/test_ingest.py: SITE_PAGES)
RESULTS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Any:
    """One line per scenario, printed after the module (even under -q)."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(RESULTS))


def chunk_ids(engine: Any, source_id: str) -> dict[str, str]:
    """chunk id -> url of every chunk of the source."""
    with engine.db() as conn:
        rows = conn.execute("SELECT id, url FROM chunks WHERE source_id = %s", (source_id,)).fetchall()
    return {r["id"]: r["url"] for r in rows}


def found(engine: Any, workspace_id: str, assistant_id: str, query: str) -> str | None:
    with engine.db() as conn:
        passages = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=query, top_k=1,
                            mode="keyword")
    return passages[0].url if passages else None


def resync(engine: Any, client: Any, source_id: str, timeout: float = 30.0) -> dict[str, Any]:
    reply = client.post(f"/api/sources/{source_id}/resync")
    assert reply.status_code == 202, reply.text
    return wait_synced(engine, client, source_id, timeout=timeout)


def record(name: str, source: dict[str, Any], before: dict[str, str], after: dict[str, str],
           gone: frozenset[str] = frozenset()) -> int:
    """One summary line; `gone`: chunk ids of pages the scenario proves gone (removed on purpose, not lost)."""
    lost = len(set(before) - set(after) - gone)
    RESULTS.append(f"resync fault {name:<24} status={source['status']:<7} pages kept={source.get('pages_kept')} "
                   f"removed={source.get('pages_removed')} failed={source['pages_failed']} "
                   f"chunks lost={lost} of {len(before)} (removed as proved gone: {len(gone & set(before))})")
    return lost


def assert_nothing_lost(name: str, engine: Any, source: dict[str, Any], before: dict[str, str],
                        workspace_id: str, assistant_id: str, queries: dict[str, str]) -> None:
    after = chunk_ids(engine, source["id"])
    lost = record(name, source, before, after)
    assert lost == 0 and set(after) == set(before), f"{name}: {lost} chunks lost"
    assert source["chunks_count"] == len(before)
    for query, path in queries.items():
        url = found(engine, workspace_id, assistant_id, query)
        assert url and url.endswith(path), (name, query, url)
    assert source["pages_removed"] == 0
    assert source["error"], f"{name}: the source does not say the sync was cut short"


# Queries and the page each must still find after the fault.
SITE_QUERIES = {"refund within 30 days": "/pricing", "anvil installer python": "/docs/install",
                "anvil maintenance manual": "/manual.pdf", "founded 1949 desert": "/about"}


def _down(site: Any, monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    site.outage = 503


def _timing_out(site: Any, monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    monkeypatch.setenv("CRAWL_TIMEOUT_S", "0.3")
    clear_caches()
    site.slow_s = 1.0


def _unauthorized(site: Any, monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    site.outage = 401


def _forbidden(site: Any, monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    site.outage = 403


def _robots_forbidden(site: Any, monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    site.statuses["/robots.txt"] = 403
    engine.stack.local.redis.flushdb()  # the hour robots.txt is cached for has passed


def _half_up(site: Any, monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    site.statuses["/docs/"] = 500  # the docs section is broken: its pages are not reached


SITE_FAULTS: dict[str, tuple[Callable[..., None], str, int]] = {
    # name: (fault, status after the sync, pages kept)
    "site down (503)": (_down, "failed", SITE_PAGES),
    "site timing out": (_timing_out, "failed", SITE_PAGES),
    "site 401": (_unauthorized, "failed", SITE_PAGES),
    "site 403": (_forbidden, "failed", SITE_PAGES),
    "robots.txt 403": (_robots_forbidden, "failed", SITE_PAGES),
    "half up (/docs/ 500)": (_half_up, "ready", 4),  # /docs/ itself, and install, faq, manual.pdf below it
}


@pytest.mark.parametrize("name", list(SITE_FAULTS))
def test_a_site_resync_under_a_fault_keeps_every_chunk(engine, site, monkeypatch, name) -> None:
    fault, status, kept = SITE_FAULTS[name]
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    assert source["status"] == "ready" and source["pages_done"] == SITE_PAGES
    before = chunk_ids(engine, source["id"])

    fault(site, monkeypatch, engine)
    source = resync(engine, client, source["id"])

    assert_nothing_lost(name, engine, source, before, workspace_id, assistant_id, SITE_QUERIES)
    assert source["status"] == status, source
    assert source["pages_kept"] == kept and source["pages_failed"] == 1, source
    assert f"kept {kept} pages" in source["error"], source["error"]
    # Retried on the schedule (the hourly resync_due), though this source has no schedule of its own.
    next_sync = datetime.fromisoformat(source["next_sync_at"])
    assert datetime.now(UTC) < next_sync <= datetime.now(UTC) + timedelta(hours=1, minutes=1)


def test_a_failed_resync_is_retried_on_the_schedule_and_then_completes(engine, site) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/",
                                                    sync_interval_hours=24)["id"])
    before = chunk_ids(engine, source["id"])
    site.outage = 503
    failed = resync(engine, client, source["id"])
    assert failed["status"] == "failed" and failed["pages_kept"] == SITE_PAGES
    # Not in 24 hours: the retry comes at the next hourly run.
    assert datetime.fromisoformat(failed["next_sync_at"]) <= datetime.now(UTC) + timedelta(hours=1, minutes=1)

    site.outage = None  # the site is back; the hour has passed
    with engine.db() as conn:
        conn.execute("UPDATE sources SET next_sync_at = now() - interval '1 minute' WHERE id = %s", (source["id"],))
    publish("resync_due", {"cron": "resync"})
    source = wait_synced(engine, client, source["id"])
    assert source["status"] == "ready" and source["error"] is None, source
    assert source["pages_kept"] == 0 and source["pages_failed"] == 0 and source["pages_done"] == SITE_PAGES
    assert set(chunk_ids(engine, source["id"])) == set(before)
    # Back on its own 24-hour schedule.
    assert datetime.fromisoformat(source["next_sync_at"]) > datetime.now(UTC) + timedelta(hours=23)
    record("down, then back", source, before, chunk_ids(engine, source["id"]))


def test_pages_that_answer_404_or_410_are_removed_and_the_rest_kept(engine, site) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    before = chunk_ids(engine, source["id"])
    site.statuses["/about"] = 410
    site.statuses["/docs/install"] = 404
    source = resync(engine, client, source["id"])

    after = chunk_ids(engine, source["id"])
    gone = frozenset(i for i, url in before.items() if url.endswith(("/about", "/docs/install")))
    assert record("404 and 410 pages", source, before, after, gone) == 0
    assert gone and set(after) == set(before) - gone
    assert source["status"] == "ready" and source["error"] is None
    assert source["pages_removed"] == 2 and source["pages_kept"] == 0 and source["pages_failed"] == 2
    assert source["chunks_count"] == len(after)
    assert found(engine, workspace_id, assistant_id, "founded 1949 desert") is None
    assert {p["error"].split(":")[0] for p in source["failed_pages"]} == {"not_found"}


def _sitemap_index(site: Any) -> None:
    site.pages["/sitemap.xml"] = ("application/xml", (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f'<sitemap><loc>{site.url}/maps/a.xml</loc></sitemap><sitemap><loc>{site.url}/maps/b.xml</loc>'
        '</sitemap></sitemapindex>'))
    site.pages["/maps/a.xml"] = ("application/xml", site.sitemap_xml(["/pricing", "/about"]))
    site.pages["/maps/b.xml"] = ("application/xml", site.sitemap_xml(["/docs/faq", "/docs/install"]))


SITEMAP_QUERIES = {"refund within 30 days": "/pricing", "anvil installer python": "/docs/install",
                   "rocket skates shipping worldwide": "/docs/faq", "founded 1949 desert": "/about"}


@pytest.mark.parametrize(("name", "status", "kept"), [
    ("sitemap down (503)", "failed", 4),
    ("sitemap cut off", "failed", 4),
    ("child sitemap 503", "ready", 2),
])
def test_a_sitemap_resync_under_a_fault_keeps_every_chunk(engine, site, name, status, kept) -> None:
    _sitemap_index(site)
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                    url=f"{site.url}/sitemap.xml")["id"])
    assert source["status"] == "ready" and source["pages_done"] == 4
    before = chunk_ids(engine, source["id"])

    if name == "sitemap down (503)":
        site.statuses["/sitemap.xml"] = 503
    elif name == "sitemap cut off":
        kind, body = site.pages["/sitemap.xml"]
        site.pages["/sitemap.xml"] = (kind, body[: len(body) // 2])
    else:
        site.statuses["/maps/b.xml"] = 503
    source = resync(engine, client, source["id"], timeout=15)

    assert_nothing_lost(name, engine, source, before, workspace_id, assistant_id, SITEMAP_QUERIES)
    assert source["status"] == status and source["pages_kept"] == kept, source
    assert f"kept {kept} pages" in source["error"], source["error"]


def test_a_page_missing_from_a_completely_read_sitemap_is_removed(engine, site) -> None:
    _sitemap_index(site)
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                    url=f"{site.url}/sitemap.xml")["id"])
    before = chunk_ids(engine, source["id"])
    site.pages["/maps/a.xml"] = ("application/xml", site.sitemap_xml(["/pricing"]))  # /about left the sitemap
    source = resync(engine, client, source["id"])

    after = chunk_ids(engine, source["id"])
    gone = frozenset(i for i, url in before.items() if url.endswith("/about"))
    assert record("page left the sitemap", source, before, after, gone) == 0
    assert gone and set(after) == set(before) - gone
    assert source["status"] == "ready" and source["error"] is None
    assert source["pages_removed"] == 1 and source["pages_kept"] == 0


FIRECRAWL_BASE = "https://anvils.example"
FIRECRAWL_PAGES = {
    f"{FIRECRAWL_BASE}/": ("Home", "# Home\n\nWelcome to the anvil shop.", 200),
    f"{FIRECRAWL_BASE}/returns": ("Returns", "# Returns\n\n## Policy\n\nReturn anvils within 60 days.", 200),
    f"{FIRECRAWL_BASE}/team": ("Team", "# Team\n\nWile E. Coyote leads testing.", 200),
    f"{FIRECRAWL_BASE}/shipping": ("Shipping", "# Shipping\n\nRocket skates ship by catapult.", 200),
}
FIRECRAWL_QUERIES = {"return anvils 60 days": "/returns", "coyote leads testing": "/team",
                     "skates ship catapult": "/shipping"}


@pytest.mark.parametrize(("name", "status", "kept"), [
    ("firecrawl crawl failed", "ready", 3),      # broke off after the first page
    ("firecrawl sees a 503", "failed", 4),       # "completed", but the start page answered 503
])
def test_a_firecrawl_resync_that_breaks_off_keeps_every_chunk(engine, firecrawl_api, monkeypatch, name, status,
                                                              kept) -> None:
    monkeypatch.setattr(firecrawl, "POLL_DELAY_S", 0)  # as in tests/test_crawl.py: no 30 s wait per poll
    firecrawl_api.send_webhooks = False
    firecrawl_api.pages.update(FIRECRAWL_PAGES)
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{FIRECRAWL_BASE}/")["id"])
    pages = client.get(f"/api/sources/{source['id']}/pages").json()  # says which page, should this ever fail
    assert source["status"] == "ready" and source["pages_done"] == 4, (source, pages, firecrawl_api.requests)
    before = chunk_ids(engine, source["id"])

    firecrawl_api.scraped_limit = 1
    if name == "firecrawl crawl failed":
        firecrawl_api.final_status = "failed"
    else:
        firecrawl_api.pages[f"{FIRECRAWL_BASE}/"] = ("", "Service Unavailable", 503)
    source = resync(engine, client, source["id"])

    assert_nothing_lost(name, engine, source, before, workspace_id, assistant_id, FIRECRAWL_QUERIES)
    assert source["status"] == status and source["pages_kept"] == kept, source
    if name == "firecrawl sees a 503":  # a passing error: the page was scraped again before it failed
        scrapes = [url for kind, url, _ in firecrawl_api.requests if kind == "scrape"]
        assert scrapes == [f"{FIRECRAWL_BASE}/"] * 3, scrapes


def test_the_sweeper_finishing_an_abandoned_sync_keeps_every_chunk(engine, site) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    before = chunk_ids(engine, source["id"])
    # A resync whose jobs were lost three hours ago: two pages were registered, nothing else happened.
    with engine.db() as conn:
        conn.execute("""UPDATE sources SET sync_generation = 2, status = 'indexing',
                            updated_at = now() - interval '4 hours' WHERE id = %s""", (source["id"],))
        conn.execute("""UPDATE documents SET sync_generation = 2, status = 'pending', attempts = 0
                        WHERE source_id = %s AND (url LIKE '%%/pricing' OR url LIKE '%%/about')""", (source["id"],))
    publish("resync_due", {"cron": "resync"})
    source = wait_synced(engine, client, source["id"])

    assert_nothing_lost("abandoned sync (sweeper)", engine, source, before, workspace_id, assistant_id,
                        SITE_QUERIES)
    assert source["status"] == "failed" and source["pages_kept"] == SITE_PAGES
    assert "abandoned" in source["error"]


def _signed_delivery(engine: Any, name: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST one QStash-signed delivery of `payload` to the real job route, with its own message id."""
    body = json.dumps(payload).encode()
    now = int(time.time())
    claims = {"iss": "Upstash", "sub": job_url(name), "iat": now, "nbf": now, "exp": now + 300,
              "jti": f"jwt_{uuid.uuid4().hex}",
              "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()}
    headers = {"content-type": "application/json", "upstash-message-id": f"msg_{uuid.uuid4().hex}",
               "upstash-retried": "0",
               "upstash-signature": jwt.encode(claims, os.environ["QSTASH_CURRENT_SIGNING_KEY"], algorithm="HS256")}
    reply = engine.client().post(f"/api/jobs/{name}", content=body, headers=headers)
    return reply.status_code, reply.json()


def test_duplicate_page_deliveries_racing_each_other_leave_the_page_indexed(engine, site, embeddings_api) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/pricing")["id"])
    # The page changed, a new sync registered it, and its ingest_pages delivery arrives five times at once
    # (the page and the embeddings API answer slowly, so every copy has read the page's chunks before the
    # first one writes its own).
    kind, body = site.pages["/pricing"]
    site.pages["/pricing"] = (kind, body.replace("10 euros", "12 euros"))
    site.delays["/pricing"] = 0.3
    embeddings_api.delay_s = 0.5
    with engine.db() as conn:
        conn.execute("UPDATE sources SET sync_generation = 2, status = 'indexing' WHERE id = %s", (source["id"],))
        conn.execute("UPDATE documents SET sync_generation = 2, status = 'pending', attempts = 0 WHERE source_id = %s",
                     (source["id"],))
    payload = {"workspace_id": workspace_id, "source_id": source["id"], "generation": 2,
               "url": f"{site.url}/pricing", "depth": 0, "follow": False}
    copies = 5
    with ThreadPoolExecutor(copies) as pool:
        replies = list(pool.map(lambda _: _signed_delivery(engine, "ingest_pages", payload), range(copies)))

    statuses = sorted(status for status, _ in replies)
    source = client.get(f"/api/sources/{source['id']}").json()
    [page] = client.get(f"/api/sources/{source['id']}/pages").json()["data"]
    RESULTS.append(f"duplicate deliveries: {copies} copies -> answers {statuses}, page {page['status']} "
                   f"after {page['attempts']} counted attempt(s), source {source['status']}")
    assert statuses == [200] * copies, replies
    assert page["status"] == "ready" and page["error"] is None and page["attempts"] == 1, page
    assert source["status"] == "ready" and source["pages_failed"] == 0 and source["pages_done"] == 1
    with engine.db() as conn:
        rows = conn.execute("SELECT id, text FROM chunks WHERE source_id = %s", (source["id"],)).fetchall()
    assert rows and len(rows) == len({r["id"] for r in rows}) == source["chunks_count"]
    assert any("12 euros" in r["text"] for r in rows) and not any("10 euros" in r["text"] for r in rows)


def test_duplicate_crawl_deliveries_start_one_firecrawl_crawl(engine, firecrawl_api, monkeypatch) -> None:
    monkeypatch.setattr(firecrawl, "POLL_DELAY_S", 0)
    firecrawl_api.send_webhooks = False
    firecrawl_api.pages.update(FIRECRAWL_PAGES)
    firecrawl_api.start_delay_s = 0.5  # every copy asks Firecrawl before the first one records its crawl
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = add_source(client, assistant_id, kind="site", url=f"{FIRECRAWL_BASE}/")  # its own delivery, plus:
    payload = {"workspace_id": workspace_id, "source_id": source["id"], "generation": 1}
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: _signed_delivery(engine, "crawl_source", payload), range(3)))
    source = wait_synced(engine, client, source["id"])

    assert [status for status, _ in replies] == [200] * 3, replies
    running = [c for c in firecrawl_api.crawls.values() if c["status"] != "cancelled"]
    RESULTS.append(f"duplicate crawl_source deliveries: {len(firecrawl_api.crawls)} crawls started, "
                   f"{len(running)} left running, source {source['status']}")
    assert len(running) == 1 and source["status"] == "ready" and source["pages_done"] == 4
