"""Embeddings: batched to the API's limits, retried on 429/5xx, query vectors cached; none without a key."""

from __future__ import annotations

import pytest

from shared.knowledge import embeddings
from shared.knowledge.embeddings import MAX_INPUTS_PER_REQUEST, embed_query, embed_texts
from tests.conftest import clear_caches
from tests.fakes.embeddings_server import embed


def test_many_texts_are_split_into_requests_of_at_most_2048_inputs(embeddings_api, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDDING_BATCH_INPUTS", "2048")  # OpenAI's cap per request (the default batch is 256)
    clear_caches()
    texts = [f"passage number {i}" for i in range(2100)] + [""]
    vectors = embed_texts(texts)
    assert vectors is not None and len(vectors) == len(texts)
    # Sent in parallel, so in either order.
    assert sorted(len(r["input"]) for r in embeddings_api.requests) == [2101 - 2048, MAX_INPUTS_PER_REQUEST]
    # Order is kept across batches, and an empty text still gets its (blank) vector.
    assert vectors[2050] == pytest.approx(embed("passage number 2050"), abs=1e-6)
    assert vectors[-1] == pytest.approx(embed(" "), abs=1e-6)
    assert {r["model"] for r in embeddings_api.requests} == {"text-embedding-3-small"}
    assert {r["dimensions"] for r in embeddings_api.requests} == {1536}


def test_long_texts_are_split_by_the_token_budget(embeddings_api) -> None:
    long_text = "lorem ipsum dolor sit amet " * 8_000  # ~216 KB: about a quarter of a request's budget
    vectors = embed_texts([long_text] * 5)
    assert vectors is not None and len(vectors) == 5
    assert len(embeddings_api.requests) >= 2  # the stand-in answers 400 above 300k tokens


def test_rate_limits_and_server_errors_are_retried(embeddings_api) -> None:
    embeddings_api.fail(429, times=2)
    embeddings_api.fail(500, times=1)
    assert embed_texts(["hello world"]) == [pytest.approx(embed("hello world"), abs=1e-6)]
    assert len(embeddings_api.requests) == 1  # the three failures were retried by the SDK


def test_a_failure_that_outlasts_the_retries_raises(embeddings_api) -> None:
    import openai

    embeddings_api.fail(503, times=10)
    with pytest.raises(openai.APIStatusError):
        embed_texts(["hello world"])


def test_query_vectors_come_from_the_cache_the_second_time(embeddings_api) -> None:
    first = embed_query("How do I reset my password?")
    second = embed_query("  How do I reset   my password? ")
    assert first == second and len(first) == 1536
    assert first == pytest.approx(embed("How do I reset my password?"), abs=1e-6)
    embeddings._recent.clear()  # another instance: the vector comes from Redis
    assert embed_query("How do I reset my password?") == pytest.approx(first, abs=1e-6)
    assert len(embeddings_api.requests) == 1


def test_without_a_key_there_are_no_embeddings(engine) -> None:
    assert embed_texts(["anything"]) is None
    assert embed_query("anything") is None
