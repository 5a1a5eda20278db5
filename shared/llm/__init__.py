"""Model providers behind one small protocol, registered by name, with failover before the first token.

A provider turns an `LLMRequest` into an async stream of `Chunk`s: text deltas, then one chunk with the
usage. It raises `ProviderError` (retryable or not) for anything that goes wrong. `stream_with_failover`
walks the providers in order: a retryable error or a timeout BEFORE the first token hands the turn to
the next one; once text has flowed, an error ends the turn (`ProviderInterrupted`) with what was said.
The providers speak the model APIs over httpx (shared/llm/wire.py): no SDK is imported for a turn.
Which providers exist, what configures each and how its tokens count: shared/llm/registry.py.

May import: core, i18n.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import anyio

from shared.core.errors import ServiceUnavailable
from shared.core.settings import get_settings
from shared.llm.registry import PROVIDERS, ProviderSpec, is_configured, model_providers, spec

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


@dataclass(frozen=True)
class LLMRequest:
    """One model call. `passages` and `question` are what the offline answerer quotes from."""

    model: str
    system: str
    messages: list[dict[str, str]]          # alternating user/assistant turns, the last one the question
    temperature: float = 0.2
    max_output_tokens: int = 800
    language: str = "en"
    question: str = ""
    passages: list[dict[str, Any]] = field(default_factory=list)  # {index, title, url, text, score}


@dataclass(frozen=True)
class Chunk:
    text: str = ""
    usage: dict[str, int] | None = None     # {input_tokens, output_tokens}, sent once at the end


@dataclass(frozen=True)
class Answering:
    """Yielded once, before the first text: who answers, and who failed before it (and why)."""

    provider: str
    model: str
    failover: list[dict[str, Any]]
    requested_at: float                      # perf_counter() when the answering provider was asked


class ProviderError(Exception):
    """A provider call failed; `retryable` errors before the first token move on to the next provider."""

    def __init__(self, provider: str, reason: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{provider}: {reason}: {message}")
        self.provider, self.reason, self.message, self.retryable = provider, reason, message, retryable

    def record(self, model: str) -> dict[str, Any]:
        return {"provider": self.provider, "model": model, "reason": self.reason, "message": self.message[:300]}


class AllProvidersFailed(Exception):
    """No provider produced a first token; `failures` says who was tried and why each failed."""

    def __init__(self, failures: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{f['provider']}: {f['reason']}" for f in failures) or "no provider")
        self.failures = failures


class ProviderInterrupted(Exception):
    """The answering provider failed after its first token: the turn ends with the text so far."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


class ProviderNotConfigured(ServiceUnavailable):
    """A template names a provider this deployment has no settings for; the message names the variable."""

    code = "provider_not_configured"


class Provider(Protocol):
    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        """Text chunks, then one usage chunk; raises ProviderError. A plain method that makes the
        client at once and returns the async iterator, so the first-token clock excludes making it."""


def get_provider(name: str) -> Provider:
    """A provider object for `name`, its module imported on first use (LookupError for unknown names)."""
    declared = spec(name)
    module, _, attribute = declared.provider.partition(":")
    factory: Callable[[ProviderSpec], Provider] = getattr(importlib.import_module(module), attribute)
    return factory(declared)


def configured(name: str) -> bool:
    return is_configured(name, get_settings())


def default_model(name: str) -> str:
    provider = spec(name)
    chosen = getattr(get_settings(), provider.model_setting, None) if provider.model_setting else None
    return str(chosen or provider.default_model)


def provider_order(primary: str, model: str, explicit: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(provider, model) pairs to try: the template's list, else its provider then the configured partners.

    Every provider the template names must be configured, else ProviderNotConfigured names the variable
    to set (a silent stand-in would hide the mistake). Partners it doesn't name join only when configured.
    With no model provider configured at all the offline answerer answers: the documented keyless mode.
    A provider other than the template's own gets its default model (the template's model is the primary's).
    """
    if not any(configured(n) for n in model_providers()):
        return [("offline", default_model("offline"))]
    named = list(dict.fromkeys(explicit or [primary]))
    missing = [n for n in named if n not in PROVIDERS or not configured(n)]
    if missing:
        raise _not_configured(missing)
    partners = [] if explicit else [n for n, s in PROVIDERS.items() if s.partner and n != primary and configured(n)]
    return [(n, model if n == primary and n != "offline" else default_model(n)) for n in [*named, *partners]]


def _not_configured(names: list[str]) -> ProviderNotConfigured:
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        return ProviderNotConfigured(f"The template names the model provider {unknown[0]!r}, which this engine "
                                     f"does not have (known: {', '.join(PROVIDERS)}).",
                                     details={"providers": names, "settings": []})
    variables = [spec(n).variables() for n in names]
    listed = "; ".join(f"{n}: set {v}" for n, v in zip(names, variables, strict=True))
    return ProviderNotConfigured(f"The template names a model provider that is not configured ({listed}; in the "
                                 "Vercel project's Environment Variables or .env).",
                                 details={"providers": names, "settings": [v.split(" or ") for v in variables]})


async def stream_with_failover(order: list[tuple[str, str]], request: LLMRequest) -> AsyncIterator[Answering | Chunk]:
    """Try each (provider, model) until one yields its first token; then stream it to the end.

    Yields one `Answering`, then `Chunk`s. Raises AllProvidersFailed or ProviderInterrupted.
    """
    settings = get_settings()
    failures: list[dict[str, Any]] = []
    for name, model in order:
        provider = get_provider(name)
        requested_at = time.perf_counter()
        try:
            # stream() makes the client first (its TLS setup on first use), so the clock below is the model's.
            chunks = provider.stream(replace(request, model=model))
            first = await _first_text(chunks, name, settings.llm_first_token_timeout_s)
        except Exception as exc:
            error = (spec(name).classify or classify)(name, exc)
            failures.append(error.record(model))
            if error.retryable:
                continue
            raise AllProvidersFailed(failures) from exc
        yield Answering(name, model, failures, requested_at)
        deadline = requested_at + settings.llm_total_timeout_s
        try:
            for chunk in first:
                yield chunk
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise ProviderError(name, "total_timeout", "the answer took longer than LLM_TOTAL_TIMEOUT_S",
                                        retryable=False)
                try:
                    # asyncio.timeout, not wait_for: the HTTP stream must be read from this one task.
                    async with asyncio.timeout(min(remaining, settings.llm_first_token_timeout_s)):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ProviderError(name, "timeout", "the provider stopped sending", retryable=False) from None
                yield chunk
        except ProviderError as exc:
            raise ProviderInterrupted(exc) from exc
        finally:
            await close_quietly(chunks)
    raise AllProvidersFailed(failures)


async def complete_text(order: list[tuple[str, str]], request: LLMRequest) -> str:
    """The whole answer as one string (drafting, judging): the streaming path with its failover, collected."""
    text = ""
    items = stream_with_failover(order, request)
    try:
        async for item in items:
            if isinstance(item, Chunk) and item.text:
                text += item.text
    finally:
        await close_quietly(items)
    return text


async def _first_text(chunks: AsyncIterator[Chunk], name: str, timeout_s: float) -> list[Chunk]:
    """Read up to and including the first chunk with text (or the end), within the first-token timeout."""
    read: list[Chunk] = []
    deadline = time.perf_counter() + timeout_s
    try:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError
            try:
                async with asyncio.timeout(remaining):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return read
            read.append(chunk)
            if chunk.text:
                return read
    except TimeoutError:
        await close_quietly(chunks)
        raise ProviderError(name, "first_token_timeout", f"no first token within {timeout_s:g} s",
                            retryable=True) from None
    except ProviderError:
        await close_quietly(chunks)
        raise


async def close_quietly(resource: Any) -> None:
    """Close an async generator or a stream, even inside a cancelled scope (a client that left)."""
    with anyio.move_on_after(2, shield=True), contextlib.suppress(Exception):
        await (resource.aclose() if hasattr(resource, "aclose") else resource.close())


# What clients see of a failover: the provider and one of these codes. The provider's own error text
# (hostnames, masked keys, request ids) stays in the stored message's `failover` for admins.
PUBLIC_REASONS = {"http_429": "rate_limited", "rate_limit_error": "rate_limited", "http_529": "overloaded",
                  "overloaded_error": "overloaded", "http_408": "timeout", "timeout": "timeout",
                  "first_token_timeout": "timeout", "total_timeout": "timeout", "connection_error": "unreachable",
                  "http_401": "auth_error", "http_403": "auth_error", "authentication_error": "auth_error",
                  "permission_error": "auth_error", "api_error": "server_error", "client_error": "internal_error",
                  "bad_stream": "server_error"}


def public_reason(reason: str) -> str:
    """A provider failure reason as a coarse code: rate_limited, overloaded, timeout, unreachable,
    auth_error, server_error, request_rejected or internal_error."""
    if reason in PUBLIC_REASONS:
        return PUBLIC_REASONS[reason]
    if reason.startswith("http_5"):
        return "server_error"
    if reason.startswith("http_4"):
        return "request_rejected"
    return "server_error" if reason.endswith("_error") else "internal_error"


def public_failover(failures: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Failover records as clients may see them: [{provider, reason}] with coarse reasons."""
    return [{"provider": str(f.get("provider")), "reason": public_reason(str(f.get("reason", "")))}
            for f in failures or []]


def classify(provider: str, exc: Exception) -> ProviderError:
    """An exception from a provider's call as a ProviderError. Our providers raise ProviderErrors already
    (shared/llm/wire.py); this also knows the openai and anthropic SDKs' exceptions (they share the class
    names), for a provider built on one."""
    kind = type(exc).__name__
    if isinstance(exc, ProviderError):
        return exc
    if "Timeout" in kind:
        return ProviderError(provider, "timeout", "the provider did not answer in time", retryable=True)
    if kind == "APIConnectionError" or isinstance(exc, (ConnectionError, OSError)):
        return ProviderError(provider, "connection_error", "the provider could not be reached", retryable=True)
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc)
    if isinstance(error, dict) and status == 200:
        # An error event inside a stream that had begun with 200: Anthropic's overloaded_error and the like.
        kind = str(error.get("type") or "stream_error")
        return ProviderError(provider, kind, str(error.get("message", ""))[:300],
                             retryable=kind in ("overloaded_error", "api_error", "rate_limit_error"))
    if isinstance(status, int):
        return ProviderError(provider, f"http_{status}", message, retryable=status in RETRYABLE_STATUS)
    # Anything else is our side (a bug, a protocol mismatch): recorded, and the next provider gets a chance.
    return ProviderError(provider, "client_error", f"{kind}: {exc}"[:300], retryable=True)


# Async HTTP clients hold connection pools bound to the event loop that used them; a job that runs
# asyncio.run() in a worker thread gets its own. Entries vanish with their loop.
_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary())
_CLIENTS_LOCK = threading.Lock()


def cached_client(key: tuple[Any, ...], factory: Callable[[], Any]) -> Any:
    """The client for `key` on the running loop, made once by `factory`."""
    loop = asyncio.get_running_loop()
    with _CLIENTS_LOCK:
        client = _CLIENTS.setdefault(loop, {}).get(key)
    if client is None:
        client = factory()
        with _CLIENTS_LOCK:
            client = _CLIENTS.setdefault(loop, {}).setdefault(key, client)
    return client


def clear_clients() -> None:
    """Forget every cached client (tests call this when they point providers somewhere else)."""
    with _CLIENTS_LOCK:
        _CLIENTS.clear()


def timeouts() -> dict[str, float]:
    """HTTP timeouts: connect fails fast (failover), a read gap up to the first-token timeout."""
    s = get_settings()
    return {"connect": s.llm_connect_timeout_s, "read": s.llm_first_token_timeout_s,
            "write": s.llm_connect_timeout_s, "pool": s.llm_connect_timeout_s}
