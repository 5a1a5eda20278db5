"""A large first sync on pgvector loads its vectors with the HNSW index set aside and builds it once at the end;
small, repeated or crowded-table syncs keep the index live; the hourly sweep brings back an index that is missing
and no bulk load explains (a deleted source, a killed build)."""

from __future__ import annotations

from shared.knowledge.retrieval import retrieve
from shared.knowledge.vectors.bulk_index import index_state
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced
from tests.faults.test_resync_faults import _signed_delivery


def builds(engine) -> list[str]:
    """The statuses of the build_vector_index jobs that ran."""
    with engine.db() as conn:
        return [r["status"] for r in conn.execute("""SELECT status FROM jobs WHERE name = 'build_vector_index'
                                                     ORDER BY created_at""").fetchall()]


def index_oid(engine) -> int | None:
    with engine.db() as conn:
        return conn.execute("SELECT to_regclass('chunks_embedding')::oid AS oid").fetchone()["oid"]


def state(engine) -> str:
    with engine.db() as conn:
        return index_state(conn)


def sync_sitemap(engine, site, client, assistant_id) -> dict:
    return wait_synced(engine, client, add_source(client, assistant_id, kind="sitemap",
                                                  url=f"{site.url}/sitemap.xml")["id"])


def test_a_large_first_sync_builds_the_index_once_after_loading(engine, site, embeddings_api, monkeypatch) -> None:
    monkeypatch.setenv("INGEST_BULK_PAGES", "3")  # the sitemap's 6 pages count as a large first sync
    client, workspace_id, assistant_id = knowledge_setup(engine)
    before = index_oid(engine)
    source = sync_sitemap(engine, site, client, assistant_id)
    engine.wait_for_queue(timeout=30)

    assert source["status"] == "ready" and source["pages_done"] == 6
    assert state(engine) == "valid" and index_oid(engine) != before  # dropped, then built anew
    assert builds(engine) == ["succeeded"]  # set aside for the load, built once when the sync ended
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM vector_index_deferrals").fetchone()["n"] == 0
        passages = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                            query="rocket skates shipping worldwide", top_k=3, mode="vector")
    assert passages and passages[0].url.endswith("/docs/faq")
    assert all(r["has_embedding"] for r in chunk_rows(engine, source["id"]))

    rebuilt = index_oid(engine)
    # The next sync of the same source is not a first one: the index stays live, nothing is rebuilt.
    site.pages["/pricing"] = ("text/html", site.pages["/pricing"][1].replace("10 euros", "12 euros"))
    assert client.post(f"/api/sources/{source['id']}/resync").status_code == 202
    again = wait_synced(engine, client, source["id"])
    engine.wait_for_queue(timeout=30)
    assert again["status"] == "ready" and state(engine) == "valid" and builds(engine) == ["succeeded"]
    assert index_oid(engine) == rebuilt


def test_small_syncs_and_crowded_tables_keep_the_index_live(engine, site, embeddings_api, monkeypatch) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    before = index_oid(engine)
    sync_sitemap(engine, site, client, assistant_id)  # 6 pages: below INGEST_BULK_PAGES (1000)
    engine.wait_for_queue(timeout=30)
    assert state(engine) == "valid" and builds(engine) == [] and index_oid(engine) == before

    # Large enough, but the table already holds more than the load is worth rebuilding for.
    monkeypatch.setenv("INGEST_BULK_PAGES", "3")
    with engine.db() as conn:
        conn.execute("""INSERT INTO chunks (id, workspace_id, assistant_id, source_id, document_id, ordinal, text,
                                            token_count, content_hash)
                        SELECT 'chk_filler' || n, c.workspace_id, c.assistant_id, c.source_id, c.document_id,
                               100 + n, 'filler', 1, 'h' FROM generate_series(1, 60) n,
                               (SELECT * FROM chunks LIMIT 1) c""")
        conn.execute("ANALYZE chunks")
    other = knowledge_setup(engine)
    synced = sync_sitemap(engine, site, other[0], other[2])
    engine.wait_for_queue(timeout=30)
    assert synced["status"] == "ready" and state(engine) == "valid" and builds(engine) == []
    assert index_oid(engine) == before


def test_the_hourly_sweep_brings_back_a_missing_index(engine, site, embeddings_api) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    source = sync_sitemap(engine, site, client, assistant_id)
    with engine.db() as conn:
        conn.execute("DROP INDEX chunks_embedding")  # as a deleted bulk source or a killed build would leave it
        # While a bulk load is under way the build waits for it.
        conn.execute("INSERT INTO vector_index_deferrals (source_id, generation) VALUES (%s, 1)", (source["id"],))
    status, body = _signed_delivery(engine, "build_vector_index", {"cron": "vector_index"})
    assert status == 200 and "skipped" in body["result"] and state(engine) == "missing"
    status, body = _signed_delivery(engine, "resync_due", {"cron": "resync"})
    assert status == 200 and "vector_index" not in body["result"]

    with engine.db() as conn:
        conn.execute("DELETE FROM vector_index_deferrals")
    status, body = _signed_delivery(engine, "resync_due", {"cron": "resync"})
    assert status == 200 and body["result"]["vector_index"] == "queued"
    engine.wait_for_queue(timeout=30)
    assert state(engine) == "valid"
