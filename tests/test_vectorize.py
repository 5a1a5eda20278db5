"""`vectorize all`, the vectorize job and the Pinecone commands: vectors rebuilt from chunks, resumably."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.__main__ import main
from shared.core.queue import publish
from shared.knowledge.retrieval import retrieve
from tests.fakes.fixtures import QUESTIONS, add_page, load_corpus, make_assistant
from tests.plugins.stack import clear_caches


def vector_counts(engine: Any) -> tuple[int, int]:
    with engine.db() as conn:
        row = conn.execute("SELECT count(*) AS total, count(vector_id) AS done, count(embedding) AS pg "
                           "FROM chunks").fetchone()
    return row["total"], row["done"]


def corpus(engine: Any) -> tuple[str, str]:
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_corpus(conn, workspace_id, assistant_id, embed=False)
    return workspace_id, assistant_id


def test_vectorize_all_gives_every_chunk_a_vector_that_search_finds(engine, embeddings_api, capsys) -> None:
    workspace_id, assistant_id = corpus(engine)
    assert vector_counts(engine) == (7, 0)
    assert main(["vectorize", "all", "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "7/7 chunks (100.0%)" in out and "vectorized 7 chunks" in out
    assert vector_counts(engine) == (7, 7)
    with engine.db() as conn:
        question, heading = QUESTIONS[0]
        found = retrieve(conn, workspace_id=workspace_id, assistant_id=assistant_id, query=question, mode="vector")
    assert found[0].heading_path == heading and found[0].vector_rank == 1


def test_an_interrupted_run_resumes_where_it_stopped(engine, embeddings_api, capsys) -> None:
    corpus(engine)
    embeddings_api.outage_after = 2  # two batches of two land, then the API is down past the SDK's retries
    assert main(["vectorize", "all", "--batch", "2"]) == 1
    assert "error:" in capsys.readouterr().err
    assert vector_counts(engine) == (7, 4)
    embeddings_api.outage_after = None
    embeddings_api.requests.clear()
    assert main(["vectorize", "all", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "resuming after chunk" in out and "4 of 7 already done" in out and "vectorized 3 chunks" in out
    assert embeddings_api.inputs_embedded == 3  # only what was left
    assert vector_counts(engine) == (7, 7)
    # Finished: the cursor is gone, so the next run rebuilds everything again.
    assert main(["vectorize", "all"]) == 0
    assert "vectorized 7 chunks" in capsys.readouterr().out


def test_reindex_rebuilds_the_hnsw_index_once(engine, embeddings_api, capsys) -> None:
    corpus(engine)
    assert main(["vectorize", "all", "--reindex"]) == 0
    assert "building the HNSW index" in capsys.readouterr().out
    assert vector_counts(engine) == (7, 7)
    with engine.db() as conn:
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_embedding'").fetchone()
    assert "hnsw (embedding vector_cosine_ops)" in index["indexdef"]


def test_scope_limits_the_rebuild_to_one_assistant(engine, embeddings_api) -> None:
    workspace_id, assistant_id = corpus(engine)
    with engine.db() as conn:
        other = make_assistant(conn, workspace_id, "Other")
        add_page(conn, workspace_id, other, "Elsewhere", [("x", "other words entirely")])
    assert main(["vectorize", "all", "--assistant", other]) == 0
    with engine.db() as conn:
        rows = conn.execute("SELECT assistant_id, vector_id IS NOT NULL AS done FROM chunks").fetchall()
    assert {(r["assistant_id"], r["done"]) for r in rows} == {(assistant_id, False), (other, True)}


def test_without_embeddings_vectorize_says_so(engine, capsys) -> None:
    corpus(engine)
    assert main(["vectorize", "all"]) == 1
    assert "OPENAI_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["pgvector", "pinecone"])
def test_the_job_chain_vectorizes_everything_once(engine, embeddings_api, request, backend) -> None:
    fake = request.getfixturevalue("pinecone_api") if backend == "pinecone" else None
    workspace_id, _ = corpus(engine)
    publish("vectorize", {"batch": 3})
    engine.wait_for_queue()
    assert vector_counts(engine) == (7, 7)
    with engine.db() as conn:
        jobs = conn.execute("SELECT status, payload FROM jobs WHERE name = 'vectorize' ORDER BY created_at").fetchall()
    assert [j["status"] for j in jobs] == ["succeeded"] * 3  # 3 + 3 + 1 chunks
    # A replayed delivery of the first batch changes nothing.
    publish("vectorize", {"batch": 3})
    engine.wait_for_queue()
    if fake is not None:
        assert len(fake.vectors("dialog-engine", workspace_id)) == 7
    else:
        with engine.db() as conn:
            assert conn.execute("SELECT count(*) AS n FROM chunks WHERE embedding IS NOT NULL").fetchone()["n"] == 7


def test_pinecone_create_index_and_configure(engine, pinecone_api, capsys, monkeypatch) -> None:
    pinecone_api.indexes.clear()
    assert main(["pinecone", "create-index", "--wait", "10"]) == 0
    out = capsys.readouterr().out
    assert "dimension 1536 (text-embedding-3-small), cosine" in out and "aws/us-east-1" in out
    model = pinecone_api.indexes["dialog-engine"]
    assert model["schema"]["fields"]["_values"] == {"type": "dense_vector", "dimension": 1536, "metric": "cosine"}
    assert model["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    assert main(["pinecone", "create-index"]) == 0  # again: already there, nothing changes
    assert "already exists" in capsys.readouterr().out
    assert main(["pinecone", "configure"]) == 0
    assert f"PINECONE_HOST={pinecone_api.host('dialog-engine')}" in capsys.readouterr().out
    assert main(["health", "pinecone"]) == 0
    assert "pinecone index dialog-engine: 0 vectors, dimension 1536" in capsys.readouterr().out
    monkeypatch.setenv("PINECONE_HOST", "http://127.0.0.1:9/elsewhere")

    clear_caches()
    assert main(["pinecone", "configure"]) == 1
    assert "PINECONE_HOST is http://127.0.0.1:9/elsewhere" in capsys.readouterr().err
