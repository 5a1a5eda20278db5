"""OpenAI embeddings: batched to the API limits, query vectors cached in Redis.

Two clients: ingestion's, the openai SDK, waits long and lets the SDK retry with backoff honouring
Retry-After (a job can afford it and is retried as a whole anyway); the query path (a chat turn or a
search waiting for its first byte) is one POST over httpx, without the SDK a fresh instance would have to
import first, with one budget, EMBEDDING_QUERY_TIMEOUT_S, for everything: our own second attempt only if
time is left.
"""

from __future__ import annotations

import array
import base64
import hashlib
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from shared.core.metrics import count_cache
from shared.core.settings import get_settings
from shared.knowledge.vectors.dimensions import EmbeddingDimensionsMismatch, verify_store, verify_vector
from shared.llm.tokens import estimate

log = logging.getLogger("dialog_engine.embeddings")

# OpenAI's limits: 2,048 inputs and 300,000 tokens summed per request, 8,192 tokens per input.
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 250_000  # headroom under 300k: our count is an estimate, not tiktoken
BATCH_CHARS_PER_TOKEN = 3.0  # denser than the prompt's 4: batches lean well under the limit
MAX_RETRIES = 4                   # ingestion: the SDK retries 429/5xx/timeouts with backoff, honouring Retry-After
QUERY_ATTEMPTS = 2                # the query path: a second try only within EMBEDDING_QUERY_TIMEOUT_S
MIN_ATTEMPT_S = 0.3               # ... and only if at least this much of the budget is left
QUERY_CACHE_TTL_S = 24 * 3600
LOCAL_CACHE_SIZE = 256            # per warm instance: a repeated question skips even the Redis round trip
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # an embeddings server on this machine: `make dev`'s model
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Query text (with model and dimensions in the key) -> vector. Only immutable values, so sharing it
# across requests of a warm instance is safe.
_recent: OrderedDict[str, list[float]] = OrderedDict()
_recent_lock = threading.Lock()


def embeddings_enabled() -> bool:
    """True when an embeddings API is configured (a key, or an own OpenAI-compatible base URL)."""
    settings = get_settings()
    return bool(settings.openai_api_key or settings.embedding_base_url)


def describe_embeddings() -> str:
    """What serves embeddings, for health and `make dev` (a host name, never a key or a full URL)."""
    from urllib.parse import urlsplit

    settings = get_settings()
    if not embeddings_enabled():
        return "no embeddings API (set OPENAI_API_KEY): keyword search only"
    base_url = settings.embedding_base_url or settings.openai_base_url or DEFAULT_BASE_URL
    host = urlsplit(base_url).hostname or "?"
    where = "local model" if host in LOOPBACK_HOSTS else f"via {host}"
    return f"{where} {settings.embedding_model}, {settings.embedding_dimensions} dimensions"


def clear_caches() -> None:
    """Forget the client and the local query cache (tests switch servers and keys)."""
    from shared.knowledge.vectors.dimensions import forget_verified

    _client.cache_clear()
    _query_client.cache_clear()
    _recent.clear()
    forget_verified()


@lru_cache
def _client() -> Any:
    from openai import OpenAI

    settings = get_settings()
    return OpenAI(api_key=settings.openai_api_key or "unused",
                  base_url=settings.embedding_base_url or settings.openai_base_url or None,
                  max_retries=MAX_RETRIES, timeout=60.0)


class EmbeddingsAPIError(Exception):
    """The embeddings API answered an error status (the query path; ingestion raises the SDK's errors)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


@lru_cache
def _query_client() -> Any:
    import httpx

    from shared.core.tls import tls_context

    settings = get_settings()
    base_url = (settings.embedding_base_url or settings.openai_base_url or DEFAULT_BASE_URL).rstrip("/")
    # The same request the SDK sent; each call sets its timeout from what is left of the budget.
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {settings.openai_api_key or 'unused'}"},
                        timeout=settings.embedding_query_timeout_s, verify=tls_context())


def _post_query(text: str, timeout_s: float) -> list[float]:
    """One query's vector from POST /embeddings (base64 float32s, as the SDK asks; plain floats accepted)."""
    settings = get_settings()
    reply = _query_client().post("/embeddings", timeout=timeout_s, json={
        "input": [settings.embedding_query_prefix + (text or " ")], "model": settings.embedding_model,
        "dimensions": settings.embedding_dimensions, "encoding_format": "base64"})
    if reply.status_code >= 400:
        from shared.llm.wire import error_message

        raise EmbeddingsAPIError(reply.status_code, error_message(reply.content))
    embedding = reply.json()["data"][0]["embedding"]
    if isinstance(embedding, str):
        return _unpack(embedding, little_endian=True)
    return [float(v) for v in embedding]


def batches(texts: list[str], max_inputs: int = MAX_INPUTS_PER_REQUEST,
            max_tokens: int = MAX_TOKENS_PER_REQUEST) -> Iterator[list[str]]:
    """Consecutive slices of `texts`, each within the input-count and token limits of one request."""
    batch: list[str] = []
    tokens = 0
    for text in texts:
        cost = estimate(text, BATCH_CHARS_PER_TOKEN)
        if batch and (len(batch) >= max_inputs or tokens + cost > max_tokens):
            yield batch
            batch, tokens = [], 0
        batch.append(text)
        tokens += cost
    if batch:
        yield batch


def embed_texts(texts: list[str]) -> list[list[float]] | None:
    """One vector per text, in order; None when no embeddings API is configured (keyword-only retrieval).

    The texts go in requests of EMBEDDING_BATCH_INPUTS (within the API's limits), EMBEDDING_CONCURRENCY of them
    in flight at once. Each request has the client's timeout and the SDK's bounded retries, the only retry
    layer here: the first request that still fails raises its error (the caller's job is retried as a whole)
    and the requests not yet sent are dropped.
    """
    if not embeddings_enabled():
        return None
    if not texts:
        return []
    verify_store_dimensions()  # before paying for vectors the store would refuse
    settings = get_settings()
    requests = list(batches(texts, max_inputs=settings.embedding_batch_inputs))
    if len(requests) == 1:
        vectors = _embed_batch(requests[0])
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(settings.embedding_concurrency, len(requests)),
                                thread_name_prefix="embed") as pool:
            futures = [pool.submit(_embed_batch, batch) for batch in requests]
            try:
                vectors = [vector for future in futures for vector in future.result()]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    for vector in vectors[:1]:  # one API, one size: the first vector tells
        verify_vector(vector, settings.embedding_dimensions)
    return vectors


def _embed_batch(batch: list[str]) -> list[list[float]]:
    settings = get_settings()
    # The API refuses empty strings; a blank chunk still needs a vector to keep positions aligned.
    prefix = settings.embedding_document_prefix
    reply = _client().embeddings.create(input=[prefix + (t if t.strip() else " ") for t in batch],
                                        model=settings.embedding_model, dimensions=settings.embedding_dimensions)
    ordered = sorted(reply.data, key=lambda item: item.index)
    if len(ordered) != len(batch):
        raise RuntimeError(f"the embeddings API returned {len(ordered)} vectors for {len(batch)} inputs")
    return [list(item.embedding) for item in ordered]


def _cache_key(text: str) -> str:
    settings = get_settings()
    digest = hashlib.sha256(f"{settings.embedding_model}|{settings.embedding_dimensions}|"
                            f"{settings.embedding_query_prefix}|{text}".encode())
    return f"emb:q:{digest.hexdigest()[:40]}"


def _pack(vector: list[float]) -> str:
    return base64.b64encode(array.array("f", vector).tobytes()).decode()


def _unpack(raw: str, little_endian: bool = False) -> list[float]:
    """Base64 float32s: ours in this machine's byte order (_pack), the API's little-endian."""
    values = array.array("f")
    values.frombytes(base64.b64decode(raw))
    if little_endian and sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def embed_query(text: str) -> list[float] | None:
    """The vector of one search query, from a small Redis cache when the same query was seen recently."""
    if not embeddings_enabled():
        return None
    verify_store_dimensions(never_wait=True)  # a turn holds a connection and waits for this: never wait for one
    text = " ".join(text.split())
    key = _cache_key(text)
    with _recent_lock:
        if key in _recent:
            _recent.move_to_end(key)
            count_cache("query_embedding", True)
            return _recent[key]
    from shared.core.kv import optional_kv

    kv = optional_kv()  # no Redis configured: embed every time
    if kv is not None:
        try:
            cached = kv.get(key)
            count_cache("query_embedding", bool(cached))
            if cached:
                return _remember(key, _unpack(cached))
        except Exception as exc:  # the cache is an optimisation: never fail a turn over it
            log.warning("query embedding cache read failed: %s", type(exc).__name__)
    vector = _embed_one(text)
    if kv is not None:
        try:
            kv.set(key, _pack(vector), ttl=QUERY_CACHE_TTL_S)
        except Exception as exc:  # as above
            log.warning("query embedding cache write failed: %s", type(exc).__name__)
    return _remember(key, vector)


def _embed_one(text: str) -> list[float]:
    """One query's vector within EMBEDDING_QUERY_TIMEOUT_S; raises the last error when the budget is spent."""
    settings = get_settings()
    deadline = time.monotonic() + settings.embedding_query_timeout_s
    for attempt in range(QUERY_ATTEMPTS):
        remaining = deadline - time.monotonic()
        try:
            vector = _post_query(text, max(remaining, 0.05))
            verify_vector(vector, settings.embedding_dimensions)
            return vector
        except EmbeddingDimensionsMismatch as exc:
            log.error("%s", exc.message)
            raise
        except Exception as exc:
            left = deadline - time.monotonic()
            if attempt + 1 >= QUERY_ATTEMPTS or left < MIN_ATTEMPT_S or not _retryable(exc):
                raise
            log.warning("query embedding failed (%s); trying once more", type(exc).__name__)
    raise AssertionError("unreachable")


def verify_store_dimensions(never_wait: bool = False) -> None:
    """Stored vectors of another size than EMBEDDING_DIMENSIONS: a named error (ingestion fails the page with it,
    search answers from keywords). `never_wait`: see dimensions.verify_store."""
    try:
        verify_store(get_settings().embedding_dimensions, never_wait=never_wait)
    except EmbeddingDimensionsMismatch as exc:
        log.error("%s", exc.message)
        raise


def _retryable(exc: Exception) -> bool:
    import httpx

    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return isinstance(exc, httpx.TransportError)  # a timeout, a refused or dropped connection


def _remember(key: str, vector: list[float]) -> list[float]:
    with _recent_lock:
        _recent[key] = vector
        while len(_recent) > LOCAL_CACHE_SIZE:
            _recent.popitem(last=False)
    return vector




# The chat turn reads the query cache in its one Redis round trip (shared.dialog.turn_gate) and writes it after the
# answer; these are embed_query's steps, apart.

def query_cache_probe(text: str) -> tuple[str, list[float] | None]:
    """(Redis key, the vector when this instance has it) for a query; the caller GETs the key on a miss.
    Raises EmbeddingDimensionsMismatch, as embed_query does, when the store was resized under this instance."""
    verify_store_dimensions(never_wait=True)
    key = _cache_key(" ".join(text.split()))
    with _recent_lock:
        if key in _recent:
            _recent.move_to_end(key)
            count_cache("query_embedding", True)
            return key, _recent[key]
    return key, None


def query_vector_from_cache(key: str, raw: str | None) -> list[float] | None:
    """The vector of a cache entry read by the caller (None on a miss or an unreadable entry)."""
    count_cache("query_embedding", bool(raw))
    if not raw:
        return None
    try:
        return _remember(key, _unpack(raw))
    except (ValueError, TypeError) as exc:
        log.warning("unreadable query embedding cache entry: %s", type(exc).__name__)
        return None


def embed_query_uncached(text: str, key: str) -> tuple[list[float], list[Any]]:
    """The API's vector for a query the cache did not have, and the Redis command that caches it."""
    verify_store_dimensions(never_wait=True)
    vector = _embed_one(" ".join(text.split()))
    return _remember(key, vector), ["SET", key, _pack(vector), "EX", QUERY_CACHE_TTL_S]
