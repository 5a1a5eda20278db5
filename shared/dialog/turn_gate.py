"""Before a chat turn, in ONE Redis round trip: the assistant (its cache entry), the turn counted against
every rate limit, the token budget read and the query embedding's cache read.

The limits and the embedding depend on the assistant's configuration, which that same round trip reads:
so the instance keeps the assistant it saw last (`assistants.remember`) and plans with it. The entry read back confirms
the plan (the usual case). Without one (the first turn for this assistant on this instance) the assistant
is read first and the limits follow: two round trips. When the entry differs from what was planned with
(an admin changed the assistant; on the instance that changed it the memory is dropped at once), the
checks run again on the new configuration; a turn may then be counted twice once, never let through.
Redis down: the turn passes without limits and reads the assistant from PostgreSQL, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg

from shared import llm
from shared.core.db import Row
from shared.core.errors import ServiceUnavailable
from shared.core.kv import optional_kv
from shared.core.metrics import count_cache
from shared.guard import ratelimit
from shared.guard.origins import require_origin
from shared.workspace.assistants import (
    CACHE_TTL_S,
    TOMBSTONE,
    ResolvedAssistant,
    cache_key,
    from_json,
    load_assistant,
    remember,
    remembered,
    to_json,
)

log = logging.getLogger("dialog_engine.chat")


@dataclass
class Admission:
    assistant: ResolvedAssistant
    embedding_key: str | None = None          # the query's cache key, planned with `assistant`'s settings
    embedding_text: str | None = None         # the text that key was made for
    cached_vector: list[float] | None = None  # found in this instance or in Redis
    embedding_read: bool = False              # the Redis cache was read for it (a miss is a miss)
    after: list[list[Any]] = field(default_factory=list)  # Redis writes to send after the answer


def admit(conn: psycopg.Connection[Row], given: Any, model_text: Any) -> Admission:
    """The assistant of `given` (a chat.TurnInput), after its origin, provider, limit and budget checks.

    `model_text(assistant)` is what retrieval will search for (the message, PII redacted if the assistant
    asks): its embedding's cache entry is read in the same round trip.
    """
    ws, assistant_id = given.workspace_id, given.assistant_id
    kv = optional_kv()
    planned = remembered(ws, assistant_id)
    if planned is not None:
        _check(given, planned)  # refused before anything is counted, as with a fresh read
    commands: list[list[Any]] = [["GET", cache_key(ws, assistant_id)]]
    check = _plan_limits(given, planned) if planned is not None else None
    if check is not None:
        commands += check.commands
    embedding = _embedding_probe(planned, model_text) if planned is not None else None
    if embedding is not None and embedding[2] is None:
        commands.append(["GET", embedding[1]])
    replies = _pipeline(kv, commands)
    raw = replies[0] if replies is not None else None
    assistant = _resolve(conn, kv, ws, assistant_id, raw, replies is not None)
    remember(ws, assistant_id, assistant)
    if planned is None or assistant != planned:
        _check(given, assistant)
    admission = Admission(assistant)
    if given.principal is not None:
        if check is not None and planned is not None and assistant.limits == planned.limits:
            ratelimit.settle_chat(check, None if replies is None else replies[1:1 + len(check.commands)])
        else:  # planned with nothing or with other limits: count on the assistant as it is now
            _count_now(given, assistant)
    if embedding is not None and planned is not None and _embedding_settings(planned) == _embedding_settings(assistant):
        admission.embedding_text, admission.embedding_key, admission.cached_vector = embedding
        if admission.cached_vector is None and replies is not None:
            from shared.knowledge.embeddings import query_vector_from_cache

            admission.cached_vector = query_vector_from_cache(embedding[1], replies[-1])
            admission.embedding_read = True
    return admission


def _check(given: Any, assistant: ResolvedAssistant) -> None:
    require_origin(given.origin, assistant.allowed_origins, given.host)  # our own pages always pass
    config = assistant.config
    # A template naming a provider without its settings is refused before anything is stored or counted:
    # the error names the variable to set (a stand-in answer would hide the mistake).
    llm.provider_order(config.provider, config.model, config.providers)


def _plan_limits(given: Any, assistant: ResolvedAssistant) -> ratelimit.ChatCheck | None:
    if given.principal is None:
        return None
    visitor = given.visitor
    return ratelimit.plan_chat(given.principal, assistant.limits,
                               visitor.id if visitor else given.external_user_id, client_ip=given.client_ip,
                               anonymous=visitor is not None and visitor.anonymous)


def _count_now(given: Any, assistant: ResolvedAssistant) -> None:
    visitor = given.visitor
    ratelimit.check_chat(given.principal, assistant.limits, visitor.id if visitor else given.external_user_id,
                         client_ip=given.client_ip, anonymous=visitor is not None and visitor.anonymous)


def _embedding_settings(assistant: ResolvedAssistant) -> tuple[str, bool]:
    return assistant.config.retrieval.mode, assistant.config.pii_redaction


def _embedding_probe(assistant: ResolvedAssistant, model_text: Any) -> tuple[str, str, list[float] | None] | None:
    """(text, cache key, vector if this instance has it), or None when this turn embeds nothing."""
    if assistant.config.retrieval.mode == "keyword":
        return None
    from shared.dialog.chat import HAS_WORDS
    from shared.knowledge.embeddings import embeddings_enabled, query_cache_probe
    from shared.knowledge.retrieval import MAX_QUERY_CHARS

    text = " ".join(str(model_text(assistant)).split())[:MAX_QUERY_CHARS]
    if not HAS_WORDS.search(text) or not embeddings_enabled():
        return None
    try:
        key, vector = query_cache_probe(text)
    except Exception as exc:  # a resized store: nothing planned; the turn's own embedding step names the error
        log.warning("query embedding not planned: %s", type(exc).__name__)
        return None
    return text, key, vector


def _pipeline(kv: Any, commands: list[list[Any]]) -> list[Any] | None:
    if kv is None:
        return None
    try:
        replies: list[Any] = kv.pipeline(commands)
        return replies
    except ServiceUnavailable:
        log.warning("rate limits and caches skipped: Redis is unreachable")
        return None


def _resolve(conn: psycopg.Connection[Row], kv: Any, ws: str, assistant_id: str, raw: Any,
             redis_up: bool) -> ResolvedAssistant:
    """The assistant from its cache entry, else from PostgreSQL (and the entry filled, unless a writer's
    tombstone is there: shared.workspace.assistants explains why)."""
    hit = raw is not None and raw != TOMBSTONE
    count_cache("assistant", hit, ws)
    if hit:
        try:
            return from_json(raw)
        except (ValueError, TypeError, KeyError):
            log.warning("unreadable cache entry %s; reloading", cache_key(ws, assistant_id))
    assistant = load_assistant(conn, ws, assistant_id)
    if redis_up and raw != TOMBSTONE:
        try:
            kv.pipeline([["SET", cache_key(ws, assistant_id), to_json(assistant), "EX", CACHE_TTL_S, "NX"]])
        except ServiceUnavailable:
            pass
    return assistant
