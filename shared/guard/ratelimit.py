"""Rate limits on chat and ingestion: upstash-ratelimit's sliding window over Upstash REST or a plain Redis.

The algorithm and its Lua script are upstash-ratelimit's own (SlidingWindow). We drive the limiter's
command generator ourselves instead of calling `Ratelimit.limit()` so that every limit of one request,
plus the token-budget read, travel in ONE pipelined round trip, on the Upstash client and on redis-py
alike. Over a limit: RateLimited (429, Retry-After until the window resets), before any model call.
If Redis itself is unreachable the request passes (logged): limits protect the engine, they must not
take it down; upstash-ratelimit's own `timeout` option makes the same choice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.core.errors import RateLimited, ServiceUnavailable
from shared.core.kv import get_kv
from shared.core.settings import get_settings
from shared.guard import spend
from shared.guard.auth import Principal
from shared.guard.overrides import resolve

log = logging.getLogger("dialog_engine.ratelimit")
PREFIX = "rl"  # keys: rl:<scope>:<identifier>:<window number>
IngestKind = Literal["ingest", "upload"]


class AssistantLimits(BaseModel):
    """assistants.limits (and workspaces.settings): overrides of the settings; 0 = no limit, absent = default."""

    model_config = ConfigDict(extra="forbid")

    chat_per_key_per_minute: int | None = Field(default=None, ge=0, le=1_000_000)
    chat_per_user_per_minute: int | None = Field(default=None, ge=0, le=1_000_000)
    chat_per_ip_per_minute: int | None = Field(default=None, ge=0, le=1_000_000)
    daily_token_budget: int | None = Field(default=None, ge=0, le=10**12)


@dataclass(frozen=True)
class Limit:
    """One limit to check: `max_requests` per `window_s` for `identifier`, named `scope` in errors."""

    scope: str
    identifier: str
    max_requests: int
    window_s: int
    what: str  # "chat requests for this key", in the error message


def chat_limits(principal: Principal, assistant_limits: Mapping[str, Any] | None, external_user_id: str | None,
                client_ip: str | None = None, workspace_settings: Mapping[str, Any] | None = None,
                anonymous: bool = False) -> list[Limit]:
    """The limits one chat turn counts against: per key (or signed-in user), per end user, and for
    `anonymous` visitors also per client IP.

    `external_user_id` must be an id the caller cannot choose freely: a verified user id, an engine-issued
    visitor id, or one an admin key (the customer's backend) sends. An anonymous visitor can always drop
    its visitor token and get a new id, so its IP is limited too: new ids don't buy new turns.
    """
    settings = get_settings()
    per_key = resolve("chat_per_key_per_minute", settings.rate_chat_per_key_per_minute,
                      assistant_limits, workspace_settings)
    per_user = resolve("chat_per_user_per_minute", settings.rate_chat_per_user_per_minute,
                       assistant_limits, workspace_settings)
    caller = principal.key_id or principal.actor or principal.scope
    limits = [Limit("key", f"chat:key:{principal.workspace_id}:{caller}", per_key, 60,
                    "chat requests for this key")]
    # The end user as the client names it; anonymous widget users fall back to their IP address.
    user = f"user:{external_user_id}" if external_user_id else (f"ip:{client_ip}" if client_ip else None)
    if user:
        limits.append(Limit("user", f"chat:{principal.workspace_id}:{user}", per_user, 60,
                            "chat requests for this user"))
    if anonymous and client_ip:
        per_ip = resolve("chat_per_ip_per_minute", settings.rate_chat_per_ip_per_minute,
                         assistant_limits, workspace_settings)
        limits.append(Limit("ip", f"chat:{principal.workspace_id}:addr:{client_ip}", per_ip, 60,
                            "chat requests from this address"))
    return [limit for limit in limits if limit.max_requests > 0]


@dataclass
class ChatCheck:
    """One chat turn's limit scripts and budget read, as commands to send in someone's pipeline."""

    limits: list[Limit]
    generators: list[Any]
    commands: list[list[Any]]  # one EVAL per limit, then the budget counter's GET when there is a budget
    budget: int


def plan_chat(principal: Principal, assistant_limits: Mapping[str, Any] | None, external_user_id: str | None,
              *, client_ip: str | None = None, workspace_settings: Mapping[str, Any] | None = None,
              budget: bool = True, anonymous: bool = False) -> ChatCheck:
    """The commands that count one chat turn (send them with kv.pipeline, then settle_chat the replies)."""
    limits = chat_limits(principal, assistant_limits, external_user_id, client_ip, workspace_settings, anonymous)
    generators, commands = _limit_commands(limits)
    token_budget = spend.resolve_budget(assistant_limits, workspace_settings) if budget else 0
    if token_budget > 0:
        commands.append(["GET", spend.counter_key(principal.workspace_id)])
    return ChatCheck(limits, generators, commands, token_budget)


def settle_chat(check: ChatCheck, replies: list[Any] | None) -> None:
    """Raise RateLimited over a limit or past the budget; None replies (Redis down) let the turn pass."""
    if replies is None:
        return
    responses = [generator.send(int(reply)) for generator, reply in zip(check.generators, replies, strict=False)]
    _raise_if_over(check.limits, responses)
    if check.budget > 0:
        spend.evaluate(int(replies[len(check.generators)] or 0), check.budget)


def check_chat(principal: Principal, assistant_limits: Mapping[str, Any] | None, external_user_id: str | None,
               *, client_ip: str | None = None, workspace_settings: Mapping[str, Any] | None = None,
               budget: bool = True, anonymous: bool = False) -> None:
    """Count one chat turn; raise RateLimited (429) over a limit or past the daily token budget.

    One Redis round trip covers both rate limits and (with `budget`) the workspace's token counter,
    so the chat engine need not also call spend.check_budget.
    """
    check = plan_chat(principal, assistant_limits, external_user_id, client_ip=client_ip,
                      workspace_settings=workspace_settings, budget=budget, anonymous=anonymous)
    if not check.commands:
        return
    try:
        replies = get_kv().pipeline(check.commands)
    except ServiceUnavailable:
        log.warning("rate limits skipped: Redis is unreachable")
        replies = None
    settle_chat(check, replies)


def check_ingest(workspace_id: str, kind: IngestKind = "ingest",
                 workspace_settings: Mapping[str, Any] | None = None) -> None:
    """Count one source added / re-synced (`ingest`) or one file uploaded (`upload`) for the workspace."""
    settings = get_settings()
    name = f"{kind}_per_workspace_per_hour"
    default = (settings.rate_upload_per_workspace_per_hour if kind == "upload"
               else settings.rate_ingest_per_workspace_per_hour)
    per_hour = resolve(name, default, workspace_settings)
    if per_hour <= 0:
        return
    noun = "file uploads" if kind == "upload" else "ingestion requests"
    limits = [Limit("workspace", f"{kind}:{workspace_id}", per_hour, 3600, f"{noun} for this workspace")]
    outcome = _run(limits, [])
    if outcome is not None:
        _raise_if_over(limits, outcome[0])


def _run(limits: list[Limit], extra: list[list[Any]]) -> tuple[list[Any], list[Any]] | None:
    """Run every limiter's script (and the extra commands) in one pipeline; None if Redis is down."""
    if not limits and not extra:
        return [], []
    generators, commands = _limit_commands(limits)
    try:
        replies = get_kv().pipeline(commands + extra)
    except ServiceUnavailable:
        log.warning("rate limits skipped: Redis is unreachable")
        return None
    # replies: one per limit, then the extra reads the caller pipelined (returned apart)
    responses = [generator.send(int(reply)) for generator, reply in zip(generators, replies, strict=False)]
    return responses, replies[len(generators):]


def _limit_commands(limits: list[Limit]) -> tuple[list[Any], list[list[Any]]]:
    """upstash-ratelimit's SlidingWindow script for each limit: (its generators, the EVAL commands)."""
    if not limits:
        return [], []
    # 0.3 s of imports: paid by the first request that needs a limit, not by every cold start.
    from upstash_ratelimit.limiter import SlidingWindow

    kv = get_kv()
    generators, commands = [], []
    for limit in limits:
        limiter = SlidingWindow(max_requests=limit.max_requests, window=limit.window_s, unit="s")
        generator = limiter._limit(f"{PREFIX}:{limit.identifier}", 1)
        command, (script, keys, args) = next(generator)
        if command != "eval":  # a future upstash-ratelimit changed its protocol: fail loudly in tests
            raise RuntimeError(f"upstash-ratelimit asked for {command!r}, expected 'eval'")
        commands.append(["EVAL", script if kv.upstash else _without_shebang(script), len(keys), *keys, *args])
        generators.append(generator)
    return generators, commands


def _without_shebang(script: str) -> str:
    # "#!lua flags=allow-key-locking" needs Redis 7; self-hosted Redis 6.2 must run the same script.
    stripped = script.lstrip()
    return stripped.split("\n", 1)[1] if stripped.startswith("#!") else script


def _raise_if_over(limits: list[Limit], responses: list[Any]) -> None:
    over = [(limit, response) for limit, response in zip(limits, responses, strict=True)
            if not response.allowed]
    if not over:
        return
    now = time.time()
    limit, response = max(over, key=lambda pair: pair[1].reset)
    retry_after = max(1, math.ceil(response.reset - now))
    window = "minute" if limit.window_s == 60 else "hour" if limit.window_s == 3600 else f"{limit.window_s} s"
    error = RateLimited(
        f"Too many {limit.what}: at most {limit.max_requests} per {window}. Try again in {retry_after} s.",
        retry_after=retry_after,
        details={"scope": limit.scope, "limit": limit.max_requests, "window_seconds": limit.window_s,
                 "retry_after": retry_after, "reset": math.ceil(response.reset)})
    error.headers.update({"X-RateLimit-Limit": str(limit.max_requests), "X-RateLimit-Remaining": "0",
                          "X-RateLimit-Reset": str(math.ceil(response.reset))})
    raise error
