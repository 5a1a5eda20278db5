"""Semantic search with no key: the local stack's real model embeds chunks at ingestion and questions at search
time through the production path (openai SDK, EMBEDDING_BASE_URL), so a paraphrase with no word in common
with its passage is found; and EMBEDDING_DIMENSIONS disagreeing with the stored vectors is a named error
everywhere (migrate, vectorize, ingestion, health), with `vectorize all --resize` as the way through."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.ops.migrate import MigrationError, migrate
from tests.conftest import ROOT
from tests.fakes.crawl_fixtures import add_source, knowledge_setup, wait_synced

PAGES = [
    ("Account security", "To reset your password, open Settings, choose Security and click Reset password. "
                         "We email you a link that stays valid for 24 hours."),
    ("Billing", "Invoices are sent monthly by email. Download past invoices as PDF files from the Billing page."),
    ("Office hours", "Our office is closed on public holidays and at weekends."),
    ("Website widget", "Embed the chat widget on any site by pasting one script tag before the closing body tag."),
]
# Not one word in common with the password passage (nor its title): only meaning connects them.
PARAPHRASE = "I forgot my login credentials, how do I get back in?"


def ingest(engine, client, assistant_id: str) -> None:
    for title, text in PAGES:
        source = wait_synced(engine, client, add_source(client, assistant_id, kind="text", title=title,
                                                        content=text)["id"])
        assert source["status"] == "ready", source


def search(client, assistant_id: str, mode: str, query: str = PARAPHRASE) -> dict:
    reply = client.post("/api/search", json={"assistant_id": assistant_id, "query": query, "mode": mode})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_paraphrase_finds_its_passage_through_the_local_model(engine, local_model) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    ingest(engine, client, assistant_id)
    with engine.db() as conn:
        sizes = conn.execute("SELECT vector_dims(embedding) AS n FROM chunks").fetchall()
    assert [row["n"] for row in sizes] == [256] * len(PAGES)  # every chunk embedded at ingestion

    assert search(client, assistant_id, "keyword")["results"] == []  # no shared word: keywords find nothing
    for mode in ("vector", "hybrid"):
        found = search(client, assistant_id, mode)
        assert found["effective_mode"] == mode
        top = found["results"][0]
        assert top["title"] == "Account security" and top["vector"]["rank"] == 1, found
    # Words still count in hybrid: a keyword query puts its passage first in both methods.
    top = search(client, assistant_id, "hybrid", "download invoices as PDF")["results"][0]
    assert top["title"] == "Billing" and top["keyword"]["rank"] == 1 and top["vector"]["rank"] == 1


def test_health_names_the_local_model_and_the_size(engine, local_model) -> None:
    _, admin = engine.workspace()
    vectors = engine.client(admin).get("/api/health").json()["checks"]["vectors"]
    assert vectors["status"] == "ok"
    assert vectors["detail"].startswith("local model wordllama-l2-supercat, 256 dimensions; pgvector")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_a_changed_dimension_is_a_named_error_until_vectorize_resizes(engine, local_model, monkeypatch) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    ingest(engine, client, assistant_id)
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "128")  # the operator changes the setting ...
    engine_caches()

    # ... and `db migrate` refuses, naming the setting, the stored size and the way through.
    with pytest.raises(MigrationError, match=r"EMBEDDING_DIMENSIONS is 128 but the stored vectors "
                                             r"\(chunks.embedding\) have 256 dimensions.*vectorize all --resize"):
        migrate(engine.dsn)
    refused = run_cli("vectorize", "all")
    assert refused.returncode == 1 and "EMBEDDING_DIMENSIONS is 128" in refused.stderr, refused.stderr

    # Health says what is wrong; ingestion fails the page with the same words, not a SQL error.
    _, admin = engine.workspace()
    vectors = engine.client(admin).get("/api/health").json()["checks"]["vectors"]
    assert vectors["status"] == "down" and "EMBEDDING_DIMENSIONS is 128" in vectors["detail"]
    reply = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": "Hours",
                                              "content": "Open at nine."})
    source = wait_synced(engine, client, reply.json()["id"])
    [page] = client.get(f"/api/sources/{source['id']}/pages").json()["data"]
    assert "EMBEDDING_DIMENSIONS is 128" in (page["error"] or ""), page
    # Search still answers (from keywords) rather than failing inside its SQL statement.
    found = search(client, assistant_id, "hybrid", "download invoices as PDF")
    assert found["results"][0]["title"] == "Billing" and found["results"][0]["vector"]["rank"] is None

    resized = run_cli("vectorize", "all", "--resize")
    assert resized.returncode == 0, resized.stdout + resized.stderr
    assert "resizing chunks.embedding from 256 to 128 dimensions" in resized.stdout
    with engine.db() as conn:
        sizes = {row["n"] for row in conn.execute("SELECT vector_dims(embedding) AS n FROM chunks")}
        index = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'chunks_embedding'").fetchone()
    assert sizes == {128} and index  # every chunk embedded again at the new size, the HNSW index rebuilt
    engine_caches()
    assert migrate(engine.dsn) == []
    top = search(client, assistant_id, "hybrid")["results"][0]
    assert top["title"] == "Account security" and top["vector"]["rank"] == 1


def engine_caches() -> None:
    from tests.conftest import clear_caches

    clear_caches()


def test_a_pinecone_index_of_another_dimension_is_named_too(engine, embeddings_api, pinecone_api,
                                                             monkeypatch) -> None:
    from shared.knowledge.vectors import get_vector_store
    from shared.knowledge.vectors.dimensions import EmbeddingDimensionsMismatch
    from shared.knowledge.vectors.indexing import index_chunks
    from tests.fakes.fixtures import add_page, make_assistant

    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "512")  # the stand-in's index has 1536
    engine_caches()
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        chunks = add_page(conn, workspace_id, make_assistant(conn, workspace_id), "Billing", [("Invoices", "Monthly.")])
        with pytest.raises(EmbeddingDimensionsMismatch, match="EMBEDDING_DIMENSIONS is 512 but the Pinecone index "
                                                              "dialog-engine has dimension 1536"):
            index_chunks(conn, chunks)
    with pytest.raises(EmbeddingDimensionsMismatch, match="EMBEDDING_DIMENSIONS is 512"):
        get_vector_store().health()


def test_the_query_cache_never_serves_a_vector_of_the_old_size(engine, local_model, monkeypatch) -> None:
    from shared.knowledge.embeddings import embed_query

    question = "How do I reset my password?"
    assert len(embed_query(question)) == 256  # now cached in Redis and in this process
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "64")
    engine_caches()
    assert migrate(engine.dsn) == ["chunks.embedding resized to 64 dimensions (EMBEDDING_DIMENSIONS)"]  # no vectors
    again = embed_query(question)
    assert len(again) == 64 and len(engine.stack.local.redis.keys("emb:q:*")) == 2  # one entry per size


def test_a_model_that_needs_prefixes_gets_them_before_chunks_and_questions(engine, embeddings_api,
                                                                           monkeypatch) -> None:
    # E5-style models are trained with a marker before each kind of text; without it their search is worse.
    monkeypatch.setenv("EMBEDDING_QUERY_PREFIX", "query: ")
    monkeypatch.setenv("EMBEDDING_DOCUMENT_PREFIX", "passage: ")
    engine_caches()
    client, _, assistant_id = knowledge_setup(engine)
    ingest(engine, client, assistant_id)
    documents = [text for request in embeddings_api.requests for text in request["input"]]
    assert len(documents) == len(PAGES) and all(text.startswith("passage: ") for text in documents), documents
    assert any("Reset password" in text for text in documents)

    embeddings_api.requests.clear()
    search(client, assistant_id, "hybrid", "How do I reset my password?")
    assert [r["input"] for r in embeddings_api.requests] == [["query: How do I reset my password?"]]

    # The prefix is part of the question's vector: another prefix is not served the cached one.
    monkeypatch.setenv("EMBEDDING_QUERY_PREFIX", "search_query: ")
    engine_caches()
    search(client, assistant_id, "hybrid", "How do I reset my password?")
    assert embeddings_api.requests[-1]["input"] == ["search_query: How do I reset my password?"]


GERMAN_PAGES = [
    ("Kennwort", "Um Ihr Kennwort zurückzusetzen, öffnen Sie die Einstellungen, wählen Sie Sicherheit und klicken "
                 "Sie auf Kennwort zurücksetzen."),
    ("Rechnungen", "Rechnungen verschicken wir monatlich per E-Mail; frühere Rechnungen laden Sie als PDF herunter."),
    ("Öffnungszeiten", "An Feiertagen und am Wochenende bleibt unser Büro geschlossen."),
    ("Widget", "Binden Sie das Chat-Widget auf jeder Website ein, indem Sie ein Skript-Tag einfügen."),
]


def test_the_multilingual_local_model_finds_a_german_passage_by_meaning(engine, local_e5) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    for title, text in GERMAN_PAGES:
        source = wait_synced(engine, client, add_source(client, assistant_id, kind="text", title=title,
                                                        content=text)["id"])
        assert source["status"] == "ready", source
    with engine.db() as conn:
        sizes = {row["n"] for row in conn.execute("SELECT vector_dims(embedding) AS n FROM chunks")}
    assert sizes == {384}
    # No word in common with the passage, in German and in English: only meaning connects them.
    for question in ("Ich habe meine Zugangsdaten vergessen, wie komme ich wieder hinein?",
                     "I forgot my login credentials, how do I get back in?"):
        assert search(client, assistant_id, "keyword", question)["results"] == []
        found = search(client, assistant_id, "vector", question)
        assert found["results"][0]["title"] == "Kennwort", (question, found)
    holidays = search(client, assistant_id, "vector", "Is the office open on Christmas Day?")
    assert holidays["results"][0]["title"] == "Öffnungszeiten", holidays
