"""Keyword ranking is BM25 over per-assistant statistics: a rare word outweighs common ones, the right chunk is
found however many chunks share only a common word, and the statistics stay exact through re-syncs,
deletions, compactions and parallel ingest jobs."""

from __future__ import annotations

import threading
from typing import Any

from shared.knowledge.crawl.indexer import index_document
from shared.knowledge.retrieval import retrieve
from shared.knowledge.term_stats import compact
from tests.fakes.crawl_fixtures import add_source, knowledge_setup, wait_synced
from tests.fakes.fixtures import add_page, make_assistant

# The ledger's sums against the chunks as they are: no row means every count is right.
DRIFT = """
WITH kept AS (
    SELECT workspace_id, assistant_id, language, lexeme, sum(chunks) AS chunks, sum(tokens) AS tokens
    FROM term_stats GROUP BY 1, 2, 3, 4 HAVING sum(chunks) <> 0 OR sum(tokens) <> 0),
truth AS (
    SELECT c.workspace_id, c.assistant_id, c.language, t.lexeme, count(*) AS chunks, 0::numeric AS tokens
    FROM chunks c CROSS JOIN LATERAL unnest(tsvector_to_array(c.tsv)) AS t(lexeme) GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT workspace_id, assistant_id, language, '', count(*), sum(token_count) FROM chunks GROUP BY 1, 2, 3)
SELECT * FROM kept FULL JOIN truth USING (workspace_id, assistant_id, language, lexeme)
WHERE kept.chunks IS DISTINCT FROM truth.chunks OR kept.tokens IS DISTINCT FROM truth.tokens"""


def drift(conn: Any) -> list[Any]:
    return conn.execute(DRIFT).fetchall()


def headings(passages: list[Any]) -> list[str]:
    return [p.heading_path for p in passages]


def test_a_rare_word_outweighs_common_words_repeated(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        common = "The table has a row per server; each server row lists the table it serves."
        add_page(conn, workspace_id, assistant_id, "Servers", [(f"Servers {i}", common) for i in range(30)])
        add_page(conn, workspace_id, assistant_id, "Replication", [
            ("Replication lag", "A replica falls behind when the primary writes faster than it can replay."),
            ("Checksums", "Enable page checksums on the table to detect corruption early.")])
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                         query="which server table row shows replication lag", top_k=3, mode="keyword")
    # "replication" and "lag" are in one chunk of 32; "server", "table" and "row" in 30 (some many times).
    assert headings(found)[0] == "Replication lag", headings(found)
    assert found[0].keyword_score is not None and found[0].keyword_score > found[1].keyword_score  # type: ignore[operator]


def test_the_right_chunk_is_ranked_however_many_chunks_share_only_a_common_word(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        # 150 chunks, written first, share the common word; the answer has the rare ones but not it.
        add_page(conn, workspace_id, assistant_id, "Guide",
                 [(f"Guide part {i}", f"This guide explains step {i} of the setup.") for i in range(150)])
        add_page(conn, workspace_id, assistant_id, "Brewing", [
            ("Zymurgy", "Zymurgy is the study of fermentation in brewing.")])
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                         query="guide to zymurgy and fermentation", top_k=5, mode="keyword")
    assert headings(found)[0] == "Zymurgy", headings(found)


def test_title_and_heading_words_count_more_than_body_words(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        add_page(conn, workspace_id, assistant_id, "Backups", [
            ("Restoring a backup", "Stop the service, copy the files back and start it again.")])
        add_page(conn, workspace_id, assistant_id, "Monitoring", [
            ("Disk alerts", "An alert fires before a backup fills the disk; restoring old files frees it.")])
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                         query="restoring backup", top_k=2, mode="keyword")
    assert headings(found) == ["Restoring a backup", "Disk alerts"]


def test_statistics_follow_resync_page_removal_and_source_deletion(engine, site) -> None:
    client, workspace_id, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    other = wait_synced(engine, client, add_source(client, assistant_id, kind="text", title="Hours",
                                                   content="We open at nine and close at five.")["id"])
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM term_stats").fetchone()["n"] > 0
        assert drift(conn) == []

    kind, body = site.pages["/pricing"]
    site.pages["/pricing"] = (kind, body.replace("10 euros", "12 euros and a zeppelin"))
    del site.pages["/about"]
    for path, (kind, body) in list(site.pages.items()):
        if isinstance(body, str):
            site.pages[path] = (kind, body.replace('<a href="/about">/about</a>', ""))
    assert client.post(f"/api/sources/{source['id']}/resync").status_code == 202
    wait_synced(engine, client, source["id"])
    with engine.db() as conn:
        assert drift(conn) == []
        zeppelin = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="zeppelin",
                            mode="keyword")
        assert zeppelin and zeppelin[0].url.endswith("/pricing")
        # The finished sync folded its page jobs' rows: one per lexeme.
        rows = conn.execute("""SELECT count(*) AS n, count(DISTINCT (language, lexeme)) AS lexemes FROM term_stats
                               WHERE assistant_id = %s""", (assistant_id,)).fetchone()
        assert rows["n"] == rows["lexemes"]

    assert client.delete(f"/api/sources/{source['id']}").status_code == 200
    with engine.db() as conn:
        assert drift(conn) == []
        assert retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="zeppelin",
                        mode="keyword") == []
        assert retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="close at five",
                        mode="keyword")[0].heading_path is not None
    assert client.delete(f"/api/sources/{other['id']}").status_code == 200
    with engine.db() as conn:
        assert drift(conn) == []
        conn.execute("DELETE FROM assistants WHERE id = %s", (assistant_id,))
        assert conn.execute("SELECT count(*) AS n FROM term_stats").fetchone()["n"] == 0


def test_parallel_ingest_jobs_and_compactions_keep_the_statistics_exact(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        source_id = conn.execute("INSERT INTO sources (workspace_id, assistant_id, kind, title) VALUES "
                                 "(%s, %s, 'text', 'Many') RETURNING id", (workspace_id, assistant_id)).fetchone()["id"]
        docs = [conn.execute("""INSERT INTO documents (workspace_id, assistant_id, source_id, url, title)
                                VALUES (%s, %s, %s, %s, %s) RETURNING *""",
                             (workspace_id, assistant_id, source_id, f"https://example.com/{n}", f"Page {n}")
                             ).fetchone() for n in range(24)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with engine.db() as conn:
                for round_ in range(3):  # write, rewrite (old chunks out, new in), and so on: shared lexemes
                    for doc in docs[worker::6]:
                        body = " ".join(f"common{w} shared words page{doc['id']} round{round_}" for w in range(40))
                        index_document(conn, doc, generation=0, title=doc["title"], markdown=f"# Part\n\n{body}",
                                       url=doc["url"], language="english")
                    compact(conn, workspace_id, assistant_id)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors  # no deadlock, no serialization failure
    with engine.db() as conn:
        assert drift(conn) == []
        compact(conn, workspace_id, assistant_id)
        assert drift(conn) == []
        n = conn.execute("""SELECT sum(chunks) AS n FROM term_stats WHERE assistant_id = %s AND lexeme = ''""",
                         (assistant_id,)).fetchone()["n"]
        assert n == conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"] > 0
