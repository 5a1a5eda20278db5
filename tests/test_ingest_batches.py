"""Page jobs carry many pages: a sync fans out into few jobs, one failing page in a batch never loses the others,
duplicate deliveries of a batch insert nothing twice, a job past its time budget hands the rest on, and the
binary COPY (psycopg's write_row with pgvector's dumper) stores exactly the vectors pgvector reads back."""

from __future__ import annotations

import array
import random
from concurrent.futures import ThreadPoolExecutor

from pgvector import Vector

from shared.knowledge.crawl.indexer import chunk_id, copy_chunks
from shared.knowledge.crawl.pipeline import load_source, register_pages
from shared.knowledge.embeddings import embed_texts
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced
from tests.fakes.embeddings_server import embed
from tests.fakes.fixtures import make_assistant
from tests.faults.test_job_faults import insert_source
from tests.faults.test_resync_faults import _signed_delivery

SITEMAP_PAGES = ["/", "/pricing", "/docs/", "/docs/install", "/docs/faq", "/about"]  # html, robots.txt allows


def page_jobs(engine, source_id: str) -> list[dict]:
    with engine.db() as conn:
        return conn.execute("""SELECT status, attempts, payload FROM jobs WHERE name = 'ingest_pages'
                               AND payload->>'source_id' = %s ORDER BY created_at""", (source_id,)).fetchall()


def documents(engine, source_id: str) -> dict[str, dict]:
    with engine.db() as conn:
        rows = conn.execute("""SELECT url, status, attempts, error, (SELECT count(*) FROM chunks c
                                   WHERE c.document_id = d.id) AS chunks
                               FROM documents d WHERE source_id = %s""", (source_id,)).fetchall()
    return {r["url"]: r for r in rows}


def test_a_sitemap_sync_fans_out_into_one_job_for_all_its_pages(engine, site, embeddings_api) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                    url=f"{site.url}/sitemap.xml")["id"])

    assert source["status"] == "ready" and source["pages_done"] == len(SITEMAP_PAGES)
    [job] = page_jobs(engine, source["id"])  # one job, not one per page
    assert job["status"] == "succeeded" and len(job["payload"]["pages"]) == len(SITEMAP_PAGES)
    rows = chunk_rows(engine, source["id"])
    assert source["chunks_count"] == len(rows) and all(r["has_embedding"] for r in rows)
    assert embeddings_api.inputs_embedded == len(rows)  # every chunk of the batch embedded once


def test_a_failing_page_in_a_batch_loses_none_of_the_others(engine, site, embeddings_api) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    site.failures["/about"] = 1            # one 500, then fine: the batch's retry indexes it
    site.failures["/docs/install"] = 100   # always 500: failed after its attempts
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                    url=f"{site.url}/sitemap.xml")["id"])

    assert source["status"] == "ready" and source["pages_failed"] == 1
    assert source["pages_done"] == len(SITEMAP_PAGES) - 1
    docs = {url.removeprefix(site.url): doc for url, doc in documents(engine, source["id"]).items()}
    assert docs["/docs/install"]["status"] == "failed" and docs["/docs/install"]["attempts"] == 3
    assert "server_error" in docs["/docs/install"]["error"] and docs["/docs/install"]["chunks"] == 0
    assert docs["/about"]["status"] == "ready" and docs["/about"]["attempts"] == 2 and docs["/about"]["chunks"] > 0
    # The pages that worked the first time were written then, and never fetched or embedded again.
    for path in set(SITEMAP_PAGES) - {"/about", "/docs/install"}:
        assert docs[path]["status"] == "ready" and docs[path]["attempts"] == 1 and docs[path]["chunks"] > 0
        assert site.hits[path] == 1, path
    assert site.hits["/about"] == 2 and site.hits["/docs/install"] == 3
    rows = chunk_rows(engine, source["id"])
    assert source["chunks_count"] == len(rows) and embeddings_api.inputs_embedded == len(rows)
    [job] = page_jobs(engine, source["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 3  # the one job, delivered three times


def batch_payload(engine, site, paths: list[str]) -> tuple[str, dict, str]:
    """A sitemap source mid-sync with `paths` registered and pending, and the one job payload for all of them."""
    client, workspace_id, assistant_id = knowledge_setup(engine)
    urls = [f"{site.url}{p}" for p in paths]
    source_id = insert_source(engine, workspace_id, assistant_id, "sitemap", f"{site.url}/sitemap.xml",
                              status="indexing")
    with engine.db() as conn:
        source = load_source(conn, source_id)
        assert source is not None and register_pages(conn, source, 1, urls) == urls
    return source_id, {"workspace_id": workspace_id, "source_id": source_id, "generation": 1,
                       "pages": [{"url": u, "depth": 0, "follow": False} for u in urls]}, workspace_id


def test_duplicate_deliveries_of_a_batch_insert_nothing_twice(engine, site, embeddings_api) -> None:
    paths = ["/pricing", "/docs/install", "/docs/faq", "/about"]
    source_id, payload, _ = batch_payload(engine, site, paths)
    embeddings_api.delay_s = 0.2  # the copies overlap while they embed

    with ThreadPoolExecutor(4) as pool:  # four copies at once, each with its own message id
        replies = list(pool.map(lambda _: _signed_delivery(engine, "ingest_pages", payload), range(4)))
    embeddings_api.delay_s = 0.0
    statuses = sorted(status for status, _ in replies)
    # Each copy either wrote the pages or found them written (a copy that lost a race is retried by QStash).
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 500}, replies
    for _ in range(2):  # and again once everything is done: nothing to do
        status, body = _signed_delivery(engine, "ingest_pages", payload)
        assert status == 200 and all("skipped" in p for p in body["result"]["pages"]), body

    docs = documents(engine, source_id)
    assert all(doc["status"] == "ready" and doc["chunks"] > 0 for doc in docs.values())
    with engine.db() as conn:
        counts = conn.execute("""SELECT count(*) AS rows, count(DISTINCT (document_id, ordinal)) AS distinct_rows,
                                        (SELECT chunks_count FROM sources WHERE id = %s) AS counted
                                 FROM chunks WHERE source_id = %s""", (source_id, source_id)).fetchone()
    assert counts["rows"] == counts["distinct_rows"] == counts["counted"] == sum(d["chunks"] for d in docs.values())


def test_a_job_past_its_time_budget_hands_the_pages_left_to_a_new_job(engine, site, embeddings_api,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("INGEST_WAVE_PAGES", "2")
    monkeypatch.setenv("INGEST_JOB_BUDGET_S", "0.001")  # every job stops after its first wave
    paths = ["/", "/pricing", "/docs/", "/docs/install", "/docs/faq"]
    source_id, payload, _ = batch_payload(engine, site, paths)

    status, body = _signed_delivery(engine, "ingest_pages", payload)
    assert status == 200 and body["result"]["handed_on"] == 3
    engine.wait_for_queue(timeout=30)

    docs = documents(engine, source_id)
    assert len(docs) == len(paths) and all(d["status"] == "ready" and d["attempts"] == 1 for d in docs.values())
    assert all(site.hits[p] == 1 for p in paths)  # each page fetched once
    handed = [len(job["payload"]["pages"]) for job in page_jobs(engine, source_id)]
    assert handed == [5, 3, 1]  # the delivery, then two continuations (each did two pages)


def test_an_old_single_page_message_still_runs(engine, site, embeddings_api) -> None:
    source_id, payload, workspace_id = batch_payload(engine, site, ["/pricing"])
    status, body = _signed_delivery(engine, "ingest_pages", {"workspace_id": workspace_id, "source_id": source_id,
                                                             "generation": 1, "url": f"{site.url}/pricing"})
    assert status == 200 and body["result"]["pages"][0]["chunks"] > 0
    bad_status, bad = _signed_delivery(engine, "ingest_pages", {"workspace_id": workspace_id, "source_id": source_id,
                                                                "generation": 1})
    assert bad_status == 489 and bad["error"]["code"] == "invalid_payload"


def test_embeddings_go_in_parallel_batches_and_come_back_in_order(engine, embeddings_api, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDDING_BATCH_INPUTS", "3")
    texts = [f"page {n} about anvils number {n} and rockets {n * 7}" for n in range(10)]

    vectors = embed_texts(texts)

    assert [len(r["input"]) for r in embeddings_api.requests] == [3, 3, 3, 1] or \
        sorted(len(r["input"]) for r in embeddings_api.requests) == [1, 3, 3, 3]
    assert vectors is not None
    assert [array.array("f", v) for v in vectors] == [array.array("f", embed(t)) for t in texts]


def test_the_binary_copy_stores_exactly_the_vectors_pgvector_reads_back(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
    source_id = insert_source(engine, workspace_id, assistant_id, "url", "https://copy.example/", status="indexing")
    rng = random.Random(7)
    # float32 values (what pgvector stores), extremes included: they must come back bit for bit.
    wanted = [array.array("f", [rng.uniform(-1, 1) for _ in range(1536)]).tolist() for _ in range(3)]
    wanted[1][:4] = [3.4028234663852886e38, -1.1754943508222875e-38, 0.0, -0.0]
    with engine.db() as conn:
        docs = [conn.execute("""INSERT INTO documents (workspace_id, assistant_id, source_id, url, sync_generation)
                                VALUES (%s, %s, %s, %s, 1) RETURNING id""",
                             (workspace_id, assistant_id, source_id, f"https://copy.example/{n}")).fetchone()["id"]
                for n in range(4)]
        languages = ["english", "german", "french", "simple"]  # one COPY, each row its page's language
        rows = [{"id": chunk_id(doc, 0, f"h{n}"), "workspace_id": workspace_id, "assistant_id": assistant_id,
                 "source_id": source_id, "document_id": doc, "ordinal": 0, "title": f"Titel {n} ü",
                 "heading_path": "A > B", "url": None if n == 2 else f"https://copy.example/{n}",
                 "text": f"Die Häuser {n} laufen", "token_count": 5 + n, "content_hash": f"h{n}",
                 "language": languages[n]} for n, doc in enumerate(docs)]
        with conn.transaction():
            assert copy_chunks(conn, rows, [*wanted, None], with_embedding=True) == 4
        stored = conn.execute("""SELECT id, title, url, text, token_count, language::text AS language, vector_id,
                                        embedding::text AS embedding, tsv::text AS tsv
                                 FROM chunks ORDER BY token_count""").fetchall()
    for row, got, vector in zip(rows, stored, [*wanted, None], strict=True):
        assert (got["id"], got["title"], got["url"], got["text"], got["token_count"], got["language"]) == \
            (row["id"], row["title"], row["url"], row["text"], row["token_count"], row["language"])
        if vector is None:
            assert got["vector_id"] is None and got["embedding"] is None
        else:
            assert got["vector_id"] == row["id"]
            assert Vector.from_text(got["embedding"]).to_list() == vector
    assert "'haus'" in stored[1]["tsv"] and "'hauser'" not in stored[1]["tsv"]  # stemmed as German
