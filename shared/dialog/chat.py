"""The chat turn engine behind every face (native SSE, the AI SDK UI stream, the OpenAI-compatible API).

`prepare` (before the response starts, so its errors are plain HTTP errors), in one trip to the thread pool
on one pooled connection: the admission (shared.dialog.turn_gate: assistant, origin and provider checks, rate
limits, budget and the query embedding's cache, in ONE Redis round trip) -> store the user message and read
history (one statement; the query embedding, when not cached, runs meanwhile) -> retrieve (one statement).
The connection goes back to the pool before the answer streams. `run` then yields events: `conversation`,
`delta`s, `error` (if any), `sources`, `done`. It abstains without a model call below the template's
threshold, builds the prompt within budget, streams with failover and stores the reply with its token
usage in one statement: complete, partial (the client went away or the provider broke off; what was said
is kept) or failed (the user message stays). Then one Redis round trip: the budget's copy, cache fills.

Storing the reply survives a dropped database connection: a pooled connection that broke while the answer
streamed is replaced at checkout, and a failed store is retried on fresh connections (CHAT_STORE_ATTEMPTS),
keyed by an id made before the first try, so an ambiguous commit can't store it (or count its tokens) twice.
If it still can't be stored, the client is told (`error` store_failed, `done.stored` false with the full
text), never `complete` alone. Clients see failover reasons as coarse codes; the provider's own error text
stays in the database.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from starlette.concurrency import run_in_threadpool

from shared import llm
from shared.core.db import CONNECT_TIMEOUT_S, Row, connect
from shared.core.errors import AppError, ServiceUnavailable
from shared.core.metrics import track_metric
from shared.core.settings import get_settings
from shared.dialog import turn_gate, turn_search
from shared.dialog.conversations import HISTORY_LIMIT, Status, finish_turn_with_usage, new_message_id, start_turn
from shared.dialog.identity import Visitor
from shared.dialog.prompting import Prompt, build_prompt, citations, phrase
from shared.guard import pii, spend
from shared.guard.auth import Principal
from shared.i18n.language import AUTO, answer_language, message_language
from shared.workspace.assistants import ResolvedAssistant

log = logging.getLogger("dialog_engine.chat")
Event = tuple[str, Any]
HAS_WORDS = re.compile(r"\w")
STORE_BACKOFF_S = (0.05, 0.2, 0.5)  # between attempts to store a reply (then the last value again)
STORE_CONNECT_TIMEOUT_S = 3
STORE_FAILED = ("store_failed", "Your answer could not be saved, so it will be missing from this conversation's "
                "history; the full text is in the `done` event. Please try again shortly.")


@dataclass
class TurnInput:
    """What a face hands the engine after authenticating the caller."""

    workspace_id: str
    assistant_id: str
    message: str
    conversation_id: str | None = None
    external_user_id: str | None = None
    metadata: dict[str, Any] | None = None
    api_key_id: str | None = None
    owner_only: bool = False             # chat keys continue only conversations they started
    create_if_missing: bool = False      # the AI SDK names new chats itself
    history: list[dict[str, str]] | None = None  # caller-sent history (OpenAI face, no conversation id)
    temperature: float | None = None
    max_output_tokens: int | None = None
    origin: str | None = None            # the browser's Origin header, if any
    host: str | None = None              # our own Host header: the chat page on our origin is always allowed
    principal: Principal | None = None   # for rate limits and the token budget (None: not counted)
    client_ip: str | None = None         # the per-user limit's fallback when there is no user id
    visitor: Visitor | None = None       # chat keys: the verified or issued end user (limits, ownership)
    started: float = field(default_factory=time.perf_counter)
    model_message: str = ""              # what models and retrieval see: the message, PII redacted if asked
    assistant: ResolvedAssistant | None = None  # evaluation runs: this template version instead of the stored one

    def __post_init__(self) -> None:
        self.model_message = self.model_message or self.message


@dataclass
class Turn:
    input: TurnInput
    assistant: ResolvedAssistant
    conversation_id: str
    user_message_id: str
    history: list[dict[str, str]]
    summary: str | None
    passages: list[Any]
    retrieval_ms: float
    retrieval_error: AppError | None = None
    history_full: bool = False           # start_turn's window was full: older turns may be unsummarised
    detected: str | None = None          # the user's language (ISO 639-1) when the template answers in it
    language: str = "en"                 # the answer's language: the template's pinned one, else the user's
    after: list[list[Any]] = field(default_factory=list)  # Redis writes left for after the answer (cache fills)


def _prepare(given: TurnInput) -> Turn:
    """On one pooled connection, given back before the answer streams (64 streaming turns need not hold 64)."""
    with connect() as conn:
        return _prepare_on(conn, given)


def _prepare_on(conn: psycopg.Connection[Row], given: TurnInput) -> Turn:
    if given.principal is not None:
        given.principal.check_assistant(given.assistant_id)  # a chat key reaches only its own assistants
    # One Redis round trip: assistant, origin and provider checks, limits and budget (over them: the turn never
    # starts), and the query embedding's cache entry.
    admission = turn_gate.admit(conn, given, lambda a: _model_text(a, given.message))
    assistant = admission.assistant
    if given.assistant is not None:  # an evaluation run at another template version: its own config and plan
        assistant = given.assistant
        llm.provider_order(assistant.config.provider, assistant.config.model, assistant.config.providers)
        admission = turn_gate.Admission(assistant, after=admission.after)
    visitor = given.visitor
    redacted = None
    if assistant.config.pii_redaction:
        # Models, logs, retrieval and non-admin readers see placeholders; the stored original is for admins.
        text, mapping = pii.redact(given.message)
        redacted = text if mapping else None
        given.model_message = text
    searching = bool(HAS_WORDS.search(given.model_message))
    query_vector = turn_search.embed_ahead(assistant, given.model_message, admission) if searching else None
    start = start_turn(conn, workspace_id=given.workspace_id, assistant_id=given.assistant_id,
                       conversation_id=given.conversation_id, user_message=given.message,
                       external_user_id=given.external_user_id, metadata=given.metadata,
                       api_key_id=given.api_key_id, owner_only=given.owner_only,
                       visitor_id=visitor.id if visitor else None,
                       create_if_missing=given.create_if_missing, redacted_message=redacted)
    history = start.history if given.history is None or given.conversation_id else given.history
    turn = Turn(given, assistant, start.conversation_id, start.user_message_id, history, start.summary, [], 0.0,
                history_full=given.history is None and len(start.history) >= HISTORY_LIMIT)
    if assistant.config.language.strip().lower() == AUTO:  # a pinned language needs no detector
        turn.detected = message_language(given.model_message,
                                         [m.get("content") or "" for m in history if m.get("role") == "user"])
    turn.language = answer_language(assistant.config.language, turn.detected)
    if searching:
        found = turn_search.search(conn, assistant, given.model_message, query_vector)
        turn.passages, turn.retrieval_error, turn.retrieval_ms = found.passages, found.error, found.ms
        if found.cache_write:
            turn.after.append(found.cache_write)
    return turn


def _model_text(assistant: ResolvedAssistant, message: str) -> str:
    """What retrieval searches for under this assistant's settings (PII redacted when it asks)."""
    return pii.redact(message)[0] if assistant.config.pii_redaction else message


async def prepare(given: TurnInput) -> Turn:
    """Load the assistant, store the user message, retrieve. Raises NotFound/Forbidden before any output."""
    return await anyio.to_thread.run_sync(_prepare, given, limiter=_database_work())


_limiters: dict[int, tuple[Any, anyio.CapacityLimiter]] = {}


def _database_work() -> anyio.CapacityLimiter:
    """Turns doing database work at once in this process: as many as the pool has connections. More threads
    would only wait for a connection while holding a worker and contending for the GIL with the event
    loop that streams the other turns' answers; waiting here costs nothing."""
    loop = asyncio.get_running_loop()
    known = _limiters.get(id(loop))
    if known is None or known[0] is not loop:
        known = (loop, anyio.CapacityLimiter(max(1, get_settings().db_pool_size or 10)))
        _limiters[id(loop)] = known
    return known[1]


def should_abstain(turn: Turn) -> bool:
    """Abstain when even the best passage carries too little evidence (shared.knowledge.retrieval.evidence: normalised
    BM25,
    else cosine similarity), never on the fused score, which is relative."""
    threshold = turn.assistant.config.abstain_threshold
    if threshold <= 0:
        return False
    from shared.knowledge.retrieval import evidence

    return evidence(turn.passages) < threshold


@dataclass
class Reply:
    id: str = field(default_factory=new_message_id)  # chosen before storing: retries can't store it twice
    parts: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None
    failover: list[dict[str, Any]] | None = None
    status: Status = "failed"
    error: tuple[str, str] | None = None  # (code, message) shown to the client
    detail: str | None = None             # what went wrong, for admins (stored, never sent)
    sources: list[dict[str, Any]] = field(default_factory=list)
    engine_ms: float | None = None
    ttft_ms: float | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


async def run(turn: Turn) -> AsyncIterator[Event]:
    """The turn's events; stores the reply even when the consumer goes away mid-stream."""
    reply = Reply()
    prompt: Prompt | None = None
    summary_job: asyncio.Future[Any] | None = None
    try:
        yield "conversation", {"conversation_id": turn.conversation_id, "user_message_id": turn.user_message_id}
        if turn.retrieval_error is not None:
            reply.error = (turn.retrieval_error.code, turn.retrieval_error.message)
        elif should_abstain(turn):
            config = turn.assistant.config
            reply.parts.append(config.fallback_message or phrase("dont_know", turn.language))
            reply.status = "complete"
            yield "delta", {"text": reply.text}
        else:
            prompt, order, request = _plan(turn)
            if prompt.needs_summary or turn.history_full:
                summary_job = asyncio.ensure_future(run_in_threadpool(_queue_summary, turn))
            deltas = _stream(turn, reply, order, request)
            try:
                async for event in deltas:
                    yield event
            finally:
                await llm.close_quietly(deltas)
    except (asyncio.CancelledError, GeneratorExit):
        reply.status, reply.error = "partial", ("client_disconnected", "The client went away.")
        reply.sources = citations(reply.text, prompt.passages) if prompt and reply.text else []
        await _finish(turn, reply, _timings(turn, reply))
        raise
    except Exception:
        log.exception("chat turn %s failed", turn.conversation_id)
        reply.status = "partial" if reply.parts else "failed"
        reply.error = ("internal_error", "Something went wrong on our side; it has been logged.")
    reply.sources = citations(reply.text, prompt.passages) if prompt and reply.text else []
    timings = _timings(turn, reply)
    message_id = await _finish(turn, reply, timings)
    if summary_job is not None:
        with anyio.CancelScope(shield=True):
            await asyncio.wait([summary_job], timeout=5)
    if reply.error:
        yield "error", {"code": reply.error[0], "message": reply.error[1]}
    if message_id is None:
        yield "error", {"code": STORE_FAILED[0], "message": STORE_FAILED[1]}
    yield "sources", reply.sources
    done: dict[str, Any] = {
        "message_id": message_id, "status": reply.status, "provider": reply.provider, "model": reply.model,
        "usage": reply.usage, "timings": timings, "failover": llm.public_failover(reply.failover),
        "stored": message_id is not None}
    if message_id is None:  # what the client needs to keep the answer (and to retry) without our copy
        done.update(text=reply.text, error={"code": STORE_FAILED[0], "message": STORE_FAILED[1]})
    yield "done", done


def _plan(turn: Turn) -> tuple[Prompt, list[tuple[str, str]], llm.LLMRequest]:
    config = turn.assistant.config
    order = llm.provider_order(config.provider, config.model, config.providers)
    provider, model = order[0]
    prompt = build_prompt(config, question=turn.input.model_message, passages=turn.passages, history=turn.history,
                          summary=turn.summary, provider=provider, model=model, detected=turn.detected)
    max_out = min(turn.input.max_output_tokens or config.max_output_tokens, config.max_output_tokens)
    temperature = config.temperature if turn.input.temperature is None else turn.input.temperature
    request = llm.LLMRequest(model=model, system=prompt.system, messages=prompt.messages, temperature=temperature,
                             max_output_tokens=max_out, language=turn.language,
                             question=turn.input.model_message,
                             passages=prompt.passages)
    return prompt, order, request


async def _stream(turn: Turn, reply: Reply, order: list[tuple[str, str]], request: llm.LLMRequest
                  ) -> AsyncIterator[Event]:
    items = llm.stream_with_failover(order, request)
    try:
        async for item in items:
            if isinstance(item, llm.Answering):
                reply.provider, reply.model, reply.failover = item.provider, item.model, item.failover
                reply.engine_ms = (item.requested_at - turn.input.started) * 1000
            elif item.text:
                if reply.ttft_ms is None:
                    reply.ttft_ms = (time.perf_counter() - turn.input.started) * 1000
                reply.parts.append(item.text)
                yield "delta", {"text": item.text}
            elif item.usage is not None:
                reply.usage = item.usage
        reply.status = "complete"
    except llm.AllProvidersFailed as exc:
        reply.failover = exc.failures
        reply.error = ("providers_unavailable",
                       "No model provider could answer right now; please try again. Your message was kept.")
    except llm.ProviderInterrupted as exc:
        reply.status = "partial" if reply.parts else "failed"
        reason = llm.public_reason(exc.error.reason)
        reply.error = ("provider_interrupted", f"The model stopped answering ({reason}).")
        reply.detail = f"{exc.error.provider}: {exc.error.reason}: {exc.error.message}"[:500]
    finally:
        await llm.close_quietly(items)


async def _finish(turn: Turn, reply: Reply, timings: dict[str, float | None]) -> str | None:
    """Store the reply; shielded, so a client that went away still leaves its partial answer.
    Returns the message id, or None when it could not be stored (the caller tells the client)."""
    error = None if reply.error is None else f"{reply.error[0]}: {reply.error[1]}"
    if reply.detail:
        error = f"{error} [{reply.detail}]"
    _track(turn, reply, timings)
    with anyio.CancelScope(shield=True):
        try:
            return await anyio.to_thread.run_sync(_store_with_retries, turn, reply, timings, error,
                                                  limiter=_database_work())
        except Exception:
            log.exception("storing the reply of conversation %s failed", turn.conversation_id)
    return None


def _store_with_retries(turn: Turn, reply: Reply, timings: dict[str, float | None], error: str | None) -> str | None:
    """On a pooled connection (checked on checkout: one that broke while the answer streamed is replaced);
    when a try fails anyway, on a fresh one after a short backoff.

    Bounded by CHAT_STORE_ATTEMPTS. The statement is keyed by `reply.id`, so an attempt whose commit
    happened but whose answer was lost is found again, not stored (nor its tokens counted) twice.
    """
    attempts = get_settings().chat_store_attempts
    for attempt in range(attempts):
        try:
            # The first try usually reuses a pooled connection; retries open fresh ones within a short timeout.
            timeout = CONNECT_TIMEOUT_S if attempt == 0 else STORE_CONNECT_TIMEOUT_S
            with connect(connect_timeout=timeout, fresh=attempt > 0) as conn:
                message_id, total = _store_reply(conn, turn, reply, timings, error)
        except (psycopg.OperationalError, ServiceUnavailable) as exc:
            log.warning("storing the reply of %s failed (attempt %d of %d): %s", turn.conversation_id,
                        attempt + 1, attempts, type(exc).__name__)
            if attempt + 1 < attempts:
                time.sleep(STORE_BACKOFF_S[min(attempt, len(STORE_BACKOFF_S) - 1)])
            continue
        _after_answer(turn, total)
        return message_id
    log.error("the reply of conversation %s could not be stored (%s, %d characters)", turn.conversation_id,
              reply.status, len(reply.text))
    return None


def _store_reply(conn: psycopg.Connection[Row], turn: Turn, reply: Reply, timings: dict[str, float | None],
                 error: str | None) -> tuple[str, int | None]:
    """The reply and its token usage (partial answers cost tokens too), in one statement."""
    return finish_turn_with_usage(
        conn, workspace_id=turn.input.workspace_id, conversation_id=turn.conversation_id, message_id=reply.id,
        usage=reply.usage, day=spend.utc_now().date(), content=reply.text, citations=reply.sources,
        model=reply.model, provider=reply.provider, failover=reply.failover, timings=timings,
        status=reply.status, error=error)


def _after_answer(turn: Turn, tokens_today: int | None) -> None:
    """One Redis round trip after the answer: the budget's copy raised to today's total, cache fills."""
    commands = list(turn.after)
    if tokens_today is not None:
        commands.append(spend.raise_counter_command(turn.input.workspace_id, tokens_today))
    if not commands:
        return
    from shared.core.kv import optional_kv

    kv = optional_kv()
    try:
        if kv is not None:
            kv.pipeline(commands)
    except ServiceUnavailable:  # the row is written; the next turn's usage brings the copy up to date
        log.warning("token counter and caches not updated: Redis is unreachable")


def client_ip(request: Any) -> str | None:
    """The caller's address: forwarded headers only where the platform sets them (shared.dialog.identity)."""
    from shared.dialog.identity import client_ip as trusted_client_ip

    return trusted_client_ip(request)


def _track(turn: Turn, reply: Reply, timings: dict[str, float | None]) -> None:
    """The turn's metrics (buffered in memory; written after the response by the metrics middleware)."""
    meta = {"assistant_id": turn.assistant.id, "provider": reply.provider, "status": reply.status}
    points = {"chat.ttft_ms": timings["ttft_ms"], "chat.total_ms": timings["total_ms"],
              "chat.engine_ms": timings["engine_ms"], "chat.retrieval_ms": timings["retrieval_ms"] or None,
              "chat.tokens_in": reply.usage.get("input_tokens"), "chat.tokens_out": reply.usage.get("output_tokens"),
              "chat.failover": len(reply.failover) if reply.failover else None}
    for name, value in points.items():
        if value is not None:
            track_metric(name, value, meta, workspace_id=turn.input.workspace_id)


def _timings(turn: Turn, reply: Reply) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {"retrieval_ms": ms(turn.retrieval_ms), "engine_ms": ms(reply.engine_ms), "ttft_ms": ms(reply.ttft_ms),
            "total_ms": ms((time.perf_counter() - turn.input.started) * 1000)}


def _queue_summary(turn: Turn) -> None:
    from shared.core.queue import publish

    try:
        publish("summarize_conversation", {"workspace_id": turn.input.workspace_id,
                                           "conversation_id": turn.conversation_id},
                dedup_id=f"summarize-{turn.conversation_id}-{turn.user_message_id}")
    except Exception as exc:  # the summary is an optimisation: never fail a turn over it
        log.warning("could not queue the summary of %s: %s", turn.conversation_id, type(exc).__name__)


async def collect(events: AsyncIterator[Event]) -> dict[str, Any]:
    """Run a turn to the end and return one answer (the non-streaming faces)."""
    result: dict[str, Any] = {"content": "", "error": None}
    async for name, data in events:
        if name == "conversation":
            result.update(data)
        elif name == "delta":
            result["content"] += data["text"]
        elif name == "error":
            result["error"] = data
        elif name == "sources":
            result["sources"] = data
        elif name == "done":
            result.update(data)
    return result
