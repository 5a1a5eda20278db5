"""A turn's retrieval: the query embedding started ahead of storing the message, then one search statement.

Its errors end the turn cleanly after the message is stored: a failed embedding leaves keyword search, a
failed search a `retrieval_error` the turn reports. (Searching on a second pooled connection beside storing
the message was measured and left out: with the database on the same two cores it saved ~1 ms at 10k chunks
and cost ~0.7 ms at 100k, where the search slowed more than the insert it overlapped.)
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from shared.core.db import Row
from shared.core.errors import AppError, ServiceUnavailable
from shared.core.settings import get_settings
from shared.dialog.turn_gate import Admission
from shared.workspace.assistants import ResolvedAssistant

log = logging.getLogger("dialog_engine.chat")
_AHEAD = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="embed-ahead")


@dataclass
class Search:
    """What a turn's search found, or why it found nothing."""

    passages: list[Any] = field(default_factory=list)
    error: AppError | None = None
    ms: float = 0.0
    cache_write: list[Any] | None = None  # the query vector's Redis write, left for after the answer


def embed_ahead(assistant: ResolvedAssistant, message: str, admission: Admission | None = None
                ) -> concurrent.futures.Future[Any] | None:
    """Start the query embedding before the message is stored. The cache was read with the admission (this
    instance's copy, then Redis): a hit needs nothing more, a miss calls the API here and caches the vector
    after the answer; without a planned read, embed_query reads the cache itself."""
    if assistant.config.retrieval.mode == "keyword":
        return None
    from shared.knowledge.embeddings import embed_query, embed_query_uncached, embeddings_enabled
    from shared.knowledge.retrieval import MAX_QUERY_CHARS

    if not embeddings_enabled():
        return None
    text = " ".join(message.split())[:MAX_QUERY_CHARS]
    if admission is not None and admission.embedding_key and admission.embedding_text == text:
        if admission.cached_vector is not None:
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            done.set_result(admission.cached_vector)
            return done
        if admission.embedding_read:
            return _AHEAD.submit(embed_query_uncached, text, admission.embedding_key)
    return _AHEAD.submit(embed_query, text)


def search(conn: psycopg.Connection[Row], assistant: ResolvedAssistant, query: str,
           ahead: concurrent.futures.Future[Any] | None) -> Search:
    """One search on `conn` with the embed-ahead vector (keyword search alone when it failed)."""
    found = Search()
    began = time.perf_counter()
    vector = _vector_of(ahead, found)
    try:
        found.passages = _retrieve(conn, assistant, query, vector)
    except AppError as exc:  # the user message is stored: the turn ends cleanly instead of a bare 503
        found.error = exc
    except psycopg.OperationalError as exc:  # the connection dropped: the turn ends `failed`, stored afresh
        log.warning("retrieval failed: %s", type(exc).__name__)
        found.error = ServiceUnavailable("The knowledge base could not be searched; please try again. "
                                         "Your message was kept.", code="retrieval_unavailable")
    found.ms = (time.perf_counter() - began) * 1000
    return found


def _vector_of(ahead: concurrent.futures.Future[Any] | None, found: Search) -> list[float] | None:
    """The embed-ahead result, or None (keyword retrieval) when it failed: retrieval never embeds again.
    embed_query bounds itself by EMBEDDING_QUERY_TIMEOUT_S; the wait here is bounded too, in case the
    pool was busy with other turns' embeddings. A vector fetched from the API leaves its cache write for
    after the answer (`found.cache_write`)."""
    if ahead is None:
        return None
    try:
        result = ahead.result(timeout=get_settings().embedding_query_timeout_s + 0.5)
    except Exception as exc:  # an API error or timeout: keyword search still answers
        log.warning("query embedding failed, keyword search only: %s", type(exc).__name__)
        return None
    if isinstance(result, tuple):  # (vector, the Redis command that caches it)
        vector, found.cache_write = result
        return list(vector)
    return None if result is None else list(result)


def _retrieve(conn: psycopg.Connection[Row], assistant: ResolvedAssistant, query: str,
              vector: list[float] | None) -> list[Any]:
    from shared.knowledge.retrieval import retrieve

    settings = assistant.config.retrieval
    return retrieve(conn, workspace_id=assistant.workspace_id, assistant_id=assistant.id, query=query,
                    top_k=settings.top_k, min_score=settings.min_score, mode=settings.mode, query_vector=vector)
