"""Hybrid fusion weighs the vector list by the keyword search's evidence: a weak vector list cannot push a passage
that has every word of the question out of the top 5, and a question worded unlike the pages is still rescued
by vector search. Vectors come from the embeddings stand-in (a bag of words, so short notes sharing one or two
of the question's words are its nearest neighbours: a weak model's list), or are given as the query's vector."""

from __future__ import annotations

from typing import Any

from shared.core.settings import get_settings
from shared.knowledge.retrieval import retrieve
from shared.knowledge.vectors.indexing import index_chunks
from tests.fakes.embeddings_server import embed
from tests.fakes.fixtures import add_page, make_assistant

ANSWER = "Request limits"
QUESTION = "What is the upload size limit?"


def upload_notes_site(conn: Any, workspace_id: str, assistant_id: str) -> None:
    """One passage answering QUESTION among 24 short notes that each mention uploads and limits: the notes are
    what a bag-of-words model finds nearest, keyword search ranks the passage with every word first."""
    rows = add_page(conn, workspace_id, assistant_id, "Configuration", [(ANSWER, (
        "Requests larger than the configured maximum are refused before they reach your code. The upload size "
        "limit defaults to sixteen megabytes; raise it in the configuration file when customers send large "
        "scanned documents, and keep the proxy in front of the application in step with it."))])
    for n in range(24):
        rows += add_page(conn, workspace_id, assistant_id, f"Upload note {n}", [("Upload", (
            "Uploads count against the upload limit of your plan: each upload is checked, stored and listed on the "
            f"uploads page with its owner and date (note {n})."))])
    assert index_chunks(conn, rows) == len(rows)


def test_a_weak_vector_list_cannot_push_a_passage_with_every_word_out_of_the_top_5(engine, embeddings_api) -> None:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        upload_notes_site(conn, workspace_id, assistant_id)
        keyword = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=QUESTION, top_k=5,
                           mode="keyword")
        vector = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=QUESTION, top_k=5,
                          mode="vector")
        hybrid = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=QUESTION, top_k=5)
    # The setting: keyword search is sure (strong evidence: every word), the vector list is all notes.
    assert keyword[0].heading_path == ANSWER and keyword[0].keyword_score and keyword[0].keyword_score > 0.5
    assert ANSWER not in [p.heading_path for p in vector]
    # Equal-weight RRF ranked every note found by both methods above it (it was not in the top 5 at all).
    assert hybrid[0].heading_path == ANSWER, [p.title for p in hybrid]
    assert hybrid[0].score == 1.0 and hybrid[0].vector_rank is None
    assert len(hybrid) == 5


def test_vector_ranks_count_again_when_the_setting_raises_their_weight(engine, embeddings_api, monkeypatch) -> None:
    monkeypatch.setenv("HYBRID_VECTOR_WEIGHT", "1")
    from tests.conftest import clear_caches

    clear_caches()
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        upload_notes_site(conn, workspace_id, assistant_id)
        hybrid = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=QUESTION, top_k=5)
    assert ANSWER not in [p.heading_path for p in hybrid]
    assert all(p.keyword_rank and p.vector_rank for p in hybrid)


def test_a_question_worded_unlike_the_pages_is_rescued_by_vector_search(engine, embeddings_api) -> None:
    workspace_id, _ = engine.workspace()
    refunds = "Refunds go to the original card within 14 days after a cancellation."
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        rows = add_page(conn, workspace_id, assistant_id, "Refunds", [("Refund policy", refunds)])
        rows += add_page(conn, workspace_id, assistant_id, "Plans", [("Annual", "Save money with annual plans.")])
        rows += add_page(conn, workspace_id, assistant_id, "Widget", [("Colours", "The widget takes brand colours.")])
        assert index_chunks(conn, rows) == len(rows)
        # A model that understands the question puts it next to the refund policy, which shares no word with it.
        understood = embed(f"Refunds > Refund policy\n\n{refunds}", get_settings().embedding_dimensions)
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                         query="How do I get my money back?", top_k=2, query_vector=understood)
    assert max(p.keyword_score or 0 for p in found) < 0.5  # one word of three, in the wrong page: weak evidence
    assert "Refund policy" in [p.heading_path for p in found]
    assert found[0].vector_rank == 1 or found[1].vector_rank == 1
