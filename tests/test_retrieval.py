"""Retrieval: keyword, vector and hybrid search find the right passage; tenants and assistants never mix."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.knowledge.retrieval import retrieve
from shared.knowledge.vectors.indexing import index_chunks
from tests.fakes.fixtures import QUESTIONS, add_page, load_corpus, make_assistant
from tests.plugins.stack import clear_caches


@pytest.fixture(params=["pgvector", "pinecone"])
def backend(request: pytest.FixtureRequest, engine: Any, embeddings_api: Any) -> str:
    if request.param == "pinecone":
        request.getfixturevalue("pinecone_api")
    return request.param


@pytest.mark.parametrize("mode", ["keyword", "vector", "hybrid"])
def test_each_mode_finds_the_right_passage_for_known_questions(engine, backend, mode) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id)
        for question, heading in QUESTIONS:
            passages = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=question,
                                top_k=3, mode=mode)
            assert passages and passages[0].heading_path == heading, (question, [p.heading_path for p in passages])
            top = passages[0]
            assert 0 < top.score <= 1
            if mode in ("keyword", "hybrid"):
                assert top.keyword_rank == 1 and top.keyword_score and top.keyword_score > 0
            if mode in ("vector", "hybrid"):
                assert top.vector_rank == 1 and top.vector_score and 0 < top.vector_score <= 1
            if mode == "keyword":
                assert top.vector_rank is None
            if mode == "vector":
                assert top.keyword_rank is None


def test_hybrid_first_in_both_methods_scores_one(engine, embeddings_api) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id)
        passages = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                            query="reset password", top_k=5, mode="hybrid")
    assert passages[0].score == pytest.approx(1.0)
    assert all(a.score >= b.score for a, b in itertools.pairwise(passages))
    assert passages[0].title == "Account security" and passages[0].url == "https://docs.example.com/account-security"


def test_without_an_embedding_key_hybrid_is_keyword_search(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id, embed=False)
        for mode in ("hybrid", "vector"):
            passages = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                                query="How do I reset my password?", top_k=3, mode=mode)
            assert passages[0].heading_path == "Resetting your password"
            assert passages[0].score == pytest.approx(1.0) and passages[0].vector_rank is None


def test_other_assistants_and_workspaces_are_never_searched(engine, backend) -> None:
    workspace_id, _ = engine.workspace("Mine")
    other_workspace, _ = engine.workspace("Theirs")
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        sibling = make_assistant(conn, workspace_id, "Sibling")
        foreign = make_assistant(conn, other_workspace, "Foreign")
        secret = [("Password vault", "The reset password master key for the vault is kept in the safe.")]
        rows = add_page(conn, workspace_id, sibling, "Sibling notes", secret)
        rows += add_page(conn, other_workspace, foreign, "Foreign notes", secret)
        rows += add_page(conn, workspace_id, assistant_id, "Weather", [("Rain", "It rains a lot in autumn.")])
        index_chunks(conn, rows)
        for mode in ("keyword", "vector", "hybrid"):
            found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                             query="reset password master key vault", top_k=10, mode=mode)
            assert {p.heading_path for p in found} <= {"Rain"}, mode
            # The foreign assistant's id under our workspace finds nothing either.
            assert retrieve(conn, workspace_id=workspace_id, assistant_id=foreign,
                            query="reset password master key vault", top_k=10, mode=mode) == []


def test_top_k_and_min_score_limit_the_results(engine, embeddings_api) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id)
        everything = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                              query="password invoices widget conversations support", top_k=50, mode="hybrid")
        assert len(everything) >= 5
        assert len(retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                            query="password invoices widget conversations support", top_k=2)) == 2
        threshold = everything[2].score
        kept = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                        query="password invoices widget conversations support", top_k=50, min_score=threshold)
        assert kept and all(p.score >= threshold for p in kept)
        assert len(kept) < len(everything)


def test_keyword_search_uses_each_chunks_language(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        german = "So setzen Sie Ihre Passwörter zurück: öffnen Sie die Einstellungen."
        add_page(conn, workspace_id, assistant_id, "Konto", [("Passwort", german)], language="german")
        add_page(conn, workspace_id, assistant_id, "Account", [("Password", "Open the settings page.")])
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                         query="Einstellung Passwort", top_k=3, mode="keyword")
    # German stemming matches "Einstellungen" and "Passwörter"; the English page matches neither word.
    assert [p.heading_path for p in found] == ["Passwort"]


def test_empty_or_stop_word_queries_find_nothing(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id, embed=False)
        assert retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="   ") == []
        assert retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="the of and",
                        mode="keyword") == []
        assert retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="'\"-:&|!(",
                        mode="keyword") == []


def test_an_embeddings_or_vector_outage_falls_back_to_keywords(engine, embeddings_api, pinecone_api,
                                                                monkeypatch) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id)
        embeddings_api.outage_after = 0
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="reset my password")
        assert found[0].heading_path == "Resetting your password" and found[0].vector_rank is None
        embeddings_api.outage_after = None
        monkeypatch.setenv("PINECONE_API_KEY", "revoked-key")

        clear_caches()
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="reset my password")
        assert found[0].heading_path == "Resetting your password" and found[0].vector_rank is None
        assert found[0].score == pytest.approx(1.0)


def test_words_in_most_chunks_are_treated_like_stop_words(engine) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        add_page(conn, workspace_id, assistant_id, "Acme", [(f"Part {i}", f"Acme widget manual page {i}.")
                                                             for i in range(60)])
        add_page(conn, workspace_id, assistant_id, "Acme pricing", [("Prices", "Acme plans cost 10 euros.")])
        conn.execute("ANALYZE chunks")
        alone = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="acme", mode="keyword")
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="acme prices",
                         mode="keyword")
    # "acme" is in every chunk: it no longer decides anything (nor costs a scan of every chunk).
    assert alone == []
    assert [p.heading_path for p in found] == ["Prices"]


def test_orphan_vectors_never_crowd_out_real_passages(engine, embeddings_api, pinecone_api) -> None:
    from shared.knowledge.embeddings import embed_texts
    from shared.knowledge.vectors import VectorRecord, get_vector_store

    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        rows = load_corpus(conn, workspace_id, assistant_id)
        # Vectors left behind by chunks that no longer exist, closer to the query than anything real.
        ghost = embed_texts(["reset password"])[0]
        get_vector_store().upsert(workspace_id, [VectorRecord(f"ghost-{i}", ghost, {
            "assistant": assistant_id, "source": rows[0]["source_id"], "document": "gone", "chunk": i})
            for i in range(3)])
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query="reset password",
                         top_k=3, mode="vector")
    assert len(found) == 3 and not any(p.chunk_id.startswith("ghost") for p in found)
    assert [p.vector_rank for p in found] == [1, 2, 3]
    assert found[0].heading_path == "Resetting your password"
