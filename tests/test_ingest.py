"""Ingestion end to end: the static site through crawl_source -> ingest_pages -> chunks and vectors; replays
change nothing; a failing page is retried and recorded; a re-sync re-embeds only what changed and removes
what vanished, on pgvector and on Pinecone."""

from __future__ import annotations

import itertools

from shared.core.queue import publish
from shared.knowledge.chunking import chunk_markdown, sections
from shared.knowledge.retrieval import retrieve
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced

SITE_PAGES = {"/", "/pricing", "/docs/", "/docs/install", "/docs/faq", "/docs/manual.pdf", "/about"}


def pages_of(rows: list[dict], base: str) -> set[str]:
    return {r["url"].removeprefix(base) for r in rows}


def best_url(engine, workspace_id: str, assistant_id: str, query: str, mode: str = "keyword") -> str:
    with engine.db() as conn:
        passages = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=query, top_k=3,
                            mode=mode)
    assert passages, f"nothing found for {query!r}"
    return passages[0].url


def test_site_crawl_yields_chunks_and_keyword_search_finds_the_right_page(engine, site) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = add_source(client, assistant_id, kind="site", url=f"{site.url}/", limit=20)
    assert source["status"] == "queued" and source["pages_found"] == 0
    source = wait_synced(engine, client, source["id"])

    assert source["status"] == "ready", source
    assert source["embeddings"] == "keyword_only"  # no embeddings key in this test
    rows = chunk_rows(engine, source["id"])
    # robots.txt keeps /private/ out; the image link is never fetched.
    assert pages_of(rows, site.url) == SITE_PAGES
    assert site.hits["/private/admin"] == 0 and site.hits["/logo.png"] == 0
    assert source["pages_found"] == source["pages_done"] == len(SITE_PAGES) and source["pages_failed"] == 0
    assert source["chunks_count"] == len(rows) and source["last_synced_at"]
    assert not any(r["has_embedding"] or r["vector_id"] for r in rows)
    pricing = [r for r in rows if r["url"].endswith("/pricing")]
    assert {r["title"] for r in pricing} == {"Pricing"} and "Pricing" in pricing[0]["heading_path"]

    assert best_url(engine, workspace_id, assistant_id, "refund within 30 days").endswith("/pricing")
    assert best_url(engine, workspace_id, assistant_id, "anvil installer python").endswith("/docs/install")
    assert best_url(engine, workspace_id, assistant_id, "anvil maintenance manual").endswith("/manual.pdf")


def test_with_embeddings_every_chunk_gets_a_vector_and_vector_search_works(engine, site, embeddings_api) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])

    assert source["status"] == "ready" and source["embeddings"] == "ready"
    rows = chunk_rows(engine, source["id"])
    assert rows and all(r["has_embedding"] and r["vector_id"] == r["id"] for r in rows)
    assert embeddings_api.inputs_embedded == len(rows)  # each chunk embedded once, in batches
    assert best_url(engine, workspace_id, assistant_id, "rocket skates shipping worldwide",
                    mode="vector").endswith("/docs/faq")


def test_jobs_delivered_twice_leave_no_duplicate_chunk_or_vector(engine, site, embeddings_api, pinecone_api) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = add_source(client, assistant_id, kind="site", url=f"{site.url}/")
    # The same crawl delivered three times (no dedup id: QStash would deliver each).
    for _ in range(2):
        publish("crawl_source", {"workspace_id": workspace_id, "source_id": source["id"], "generation": 1})
    source = wait_synced(engine, client, source["id"])
    rows = chunk_rows(engine, source["id"])
    embedded = embeddings_api.inputs_embedded

    # And every page job once more, after the fact.
    for url in {r["url"] for r in rows}:
        for _ in range(2):
            publish("ingest_pages", {"workspace_id": workspace_id, "source_id": source["id"], "generation": 1,
                                     "url": url, "depth": 0, "follow": True})
    source = wait_synced(engine, client, source["id"])
    again = chunk_rows(engine, source["id"])
    assert [r["id"] for r in again] == [r["id"] for r in rows] and len({r["id"] for r in rows}) == len(rows)
    with engine.db() as conn:
        documents = conn.execute("SELECT count(*) AS n FROM documents WHERE source_id = %s",
                                 (source["id"],)).fetchone()["n"]
    assert documents == len(SITE_PAGES) == source["pages_done"]
    vectors = pinecone_api.vectors("dialog-engine", workspace_id)
    assert set(vectors) == {r["id"] for r in rows}
    assert {v["metadata"]["source"] for v in vectors.values()} == {source["id"]}
    assert embeddings_api.inputs_embedded == embedded == len(rows)  # nothing embedded twice


def test_failing_page_is_retried_then_recorded_as_failed(engine, site) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    site.failures["/about"] = 1            # one 500, then fine: the retry succeeds
    site.failures["/docs/install"] = 100   # always 500: fails after its attempts
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])

    assert source["status"] == "ready"  # other pages worked
    assert source["pages_failed"] == 1 and source["pages_done"] == len(SITE_PAGES) - 1
    assert site.hits["/about"] == 2 and site.hits["/docs/install"] == 3
    [failed] = source["failed_pages"]
    assert failed["url"].endswith("/docs/install") and "server_error" in failed["error"] and "500" in failed["error"]
    pages = client.get(f"/api/sources/{source['id']}/pages").json()["data"]
    by_path = {p["url"].removeprefix(site.url): p for p in pages}
    assert by_path["/about"]["status"] == "ready" and by_path["/about"]["attempts"] == 2
    assert by_path["/about"]["error"] is None and by_path["/about"]["chunks"] >= 1
    assert by_path["/docs/install"]["status"] == "failed" and by_path["/docs/install"]["attempts"] == 3
    only_failed = client.get(f"/api/sources/{source['id']}/pages", params={"status": "failed"}).json()
    assert [p["url"] for p in only_failed["data"]] == [failed["url"]]


def test_resync_reembeds_only_the_changed_page_and_drops_vanished_pages(engine, site, embeddings_api) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    before = {r["id"]: r for r in chunk_rows(engine, source["id"])}
    embeddings_api.requests.clear()

    kind, body = site.pages["/pricing"]
    site.pages["/pricing"] = (kind, body.replace("10 euros", "12 euros"))
    del site.pages["/about"]  # gone, and no longer linked
    for path, (kind, body) in list(site.pages.items()):
        if isinstance(body, str):
            site.pages[path] = (kind, body.replace('<a href="/about">/about</a>', ""))
    reply = client.post(f"/api/sources/{source['id']}/resync")
    assert reply.status_code == 202 and reply.json()["status"] == "queued"
    source = wait_synced(engine, client, source["id"])

    after = {r["id"]: r for r in chunk_rows(engine, source["id"])}
    assert source["status"] == "ready" and source["pages_found"] == len(SITE_PAGES) - 1
    embedded = [text for request in embeddings_api.requests for text in request["input"]]
    assert embedded and all("12 euros" in text or "Pricing" in text for text in embedded)
    changed = {i for i in after if i not in before}
    assert changed and all(after[i]["url"].endswith("/pricing") for i in changed)
    assert not any(r["url"].endswith("/about") for r in after.values())
    assert all(r["has_embedding"] for r in after.values())
    unchanged = {i for i, r in before.items() if not r["url"].endswith(("/pricing", "/about"))}
    assert unchanged <= set(after)  # same ids: the same rows and vectors, untouched
    assert best_url(engine, workspace_id, assistant_id, "starter plan 12 euros").endswith("/pricing")


def test_pinecone_vectors_follow_resync_and_delete(engine, site, embeddings_api, pinecone_api) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    rows = chunk_rows(engine, source["id"])
    assert set(pinecone_api.vectors("dialog-engine", workspace_id)) == {r["id"] for r in rows}
    about = {r["id"] for r in rows if r["url"].endswith("/about")}
    assert about

    site.pages["/about"] = ("text/html", "gone")
    del site.pages["/about"]  # now a 404: the page fails as not_found and loses its chunks and vectors
    client.post(f"/api/sources/{source['id']}/resync")
    source = wait_synced(engine, client, source["id"])
    vectors = set(pinecone_api.vectors("dialog-engine", workspace_id))
    assert vectors == {r["id"] for r in chunk_rows(engine, source["id"])} and not vectors & about
    assert any("not_found" in (p["error"] or "") for p in source["failed_pages"])

    reply = client.delete(f"/api/sources/{source['id']}")
    assert reply.status_code == 200 and reply.json()["deleted"] is True
    assert pinecone_api.vectors("dialog-engine", workspace_id) == {}
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"] == 0


def test_chunks_follow_headings_with_overlap_and_stable_hashes() -> None:
    steps = " ".join(f"Step {i} fits part {i} to the anvil." for i in range(60))
    markdown = (f"Intro.\n\n# Guide\n\nShort intro.\n\n## Setup\n\n{steps}\n\n"
                "```\n# not a heading\n```\n\n## Usage\n\nHit it.")
    chunks = chunk_markdown(markdown, "Guide", max_tokens=100, overlap_tokens=20)
    paths = [c.heading_path for c in chunks]
    assert paths[0] == "" and "Guide > Setup" in paths and paths[-1] == "Guide > Usage"
    assert "# not a heading" in " ".join(c.text for c in chunks)  # fenced code is not a heading
    assert all(c.token_count <= 100 for c in chunks) and [c.ordinal for c in chunks] == list(range(len(chunks)))
    setup = [c for c in chunks if c.heading_path == "Guide > Setup"]
    assert len(setup) >= 3
    for before, after in itertools.pairwise(setup):
        last_sentence = before.text.rsplit(". ", 1)[-1]
        assert after.text.startswith(last_sentence) or last_sentence in after.text[:100]  # the overlap
    again = chunk_markdown(markdown, "Guide", max_tokens=100, overlap_tokens=20)
    assert [c.content_hash for c in again] == [c.content_hash for c in chunks]
    assert chunk_markdown(markdown, "Other title", max_tokens=100)[0].content_hash != chunks[0].content_hash
    assert [p for p, _ in sections("# A\ntext\n### B\nmore\n## C\nend")] == [["A"], ["A", "B"], ["A", "C"]]


def test_an_embeddings_outage_is_retried_by_the_queue_and_recorded(engine, embeddings_api) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    from shared.knowledge.embeddings import MAX_RETRIES

    embeddings_api.fail(503, times=MAX_RETRIES + 1)  # more than the SDK's own retries: the job fails once
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="markdown", title="Care",
                                                    content="# Care\n\nOil the anvil monthly.")["id"])
    assert source["status"] == "ready" and source["embeddings"] == "ready"
    [page] = client.get(f"/api/sources/{source['id']}/pages").json()["data"]
    assert page["attempts"] == 2 and page["error"] is None  # the retry worked and cleared the error
    assert all(r["has_embedding"] for r in chunk_rows(engine, source["id"]))

    embeddings_api.outage_after = 0  # a lasting outage: the page fails after its attempts, with the reason
    reply = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": "Hours",
                                              "content": "Open at nine."})
    source = wait_synced(engine, client, reply.json()["id"])
    assert source["status"] == "failed"
    [page] = client.get(f"/api/sources/{source['id']}/pages").json()["data"]
    assert page["status"] == "failed" and page["attempts"] == 3 and "indexing_failed" in page["error"]
