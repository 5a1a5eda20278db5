"""The model APIs' streaming wire protocols over plain httpx, with the SDKs' timeouts and error semantics.

A chat turn needs one streamed POST per provider: importing the openai SDK for it cost a fresh instance
about as much as the whole function's import, the anthropic SDK three times that (bench/cold_start.py).
httpx is loaded by the turn anyway (Upstash), httpx-sse splits the event stream, and this module turns
every way a call can fail into a ProviderError: an HTTP error status (retryable per RETRYABLE_STATUS, with
the provider's own message), a timeout, a connection that fails or drops, an error event inside the
stream, a line that is not JSON, a stream that ends before its end marker. No retries here: failover is
the retry. Clients are cached per event loop (shared.llm.cached_client) and share one TLS context.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from shared.core.observability import scrub
from shared.core.tls import tls_context
from shared.llm import RETRYABLE_STATUS, ProviderError, cached_client, timeouts

ERROR_BODY_BYTES = 16_384  # of an error answer, enough for its message; a proxy's HTML page is cut here
# Error types inside a stream (Anthropic's `error` event, an OpenAI `{"error": ...}` chunk) that no other
# provider would answer differently; any other type (overloaded_error, api_error, server_error) fails over.
REQUEST_ERRORS = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                  "request_too_large"}
# As the SDKs: many streams at once share a provider's connections (httpx's default of 100 would queue).
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

def client(provider: str, base_url: str, headers: dict[str, str], secret: str | None) -> httpx.AsyncClient:
    """The AsyncClient for this provider, key and endpoint on the running loop (made once per loop)."""
    limits = timeouts()
    return cached_client((provider, secret, base_url, tuple(limits.items())), lambda: httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=httpx.Timeout(**limits), limits=LIMITS, verify=tls_context()))


async def events(http: httpx.AsyncClient, provider: str, path: str, body: dict[str, Any],
                 secret: str | None) -> AsyncGenerator[tuple[str, Any], None]:
    """(event name, parsed JSON data) of a streamed POST, up to the end marker; raises ProviderError.

    Closing this generator early (a client that left, a first-token timeout) closes the response, so the
    connection is dropped rather than left streaming. `secret` is kept out of every error message.
    """
    try:
        response = await http.send(http.build_request("POST", path, json=body,
                                                      headers={"Accept": "text/event-stream"}), stream=True)
    except httpx.HTTPError as exc:
        raise transport_error(provider, exc) from exc
    try:
        if response.status_code >= 400:
            raise await status_error(provider, response, secret)
        ended = False
        async for sse in EventSource(response).aiter_sse():
            # After the end marker the body is read to its end (normally nothing is left) rather than cut: a
            # response closed unread drops its connection, and a new one to a real API costs a TLS handshake.
            if ended or sse.data == "[DONE]" or sse.event == "message_stop":  # OpenAI's end marker, Anthropic's
                ended = True
                continue
            if sse.event == "ping" or not sse.data:
                continue
            data = decode(provider, sse, secret)
            if sse.event == "error" or (isinstance(data, dict) and data.get("error")):
                raise stream_error(provider, data, secret)
            yield sse.event, data
    except (httpx.HTTPError, SSEError) as exc:
        raise transport_error(provider, exc) from exc
    finally:
        await response.aclose()
    if ended:
        return
    # The body ended cleanly but without the end marker: the answer may be cut short, so it is not complete.
    raise ProviderError(provider, "connection_error", "the stream ended before its end marker", retryable=True)


def decode(provider: str, sse: ServerSentEvent, secret: str | None) -> Any:
    try:
        return json.loads(sse.data)
    except ValueError:
        raise ProviderError(provider, "bad_stream", clean(f"a stream line is not JSON: {sse.data[:120]!r}", secret),
                            retryable=True) from None


def transport_error(provider: str, exc: Exception) -> ProviderError:
    """A timeout, a connection that failed or dropped, or an answer that is not an event stream."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(provider, "timeout", "the provider did not answer in time", retryable=True)
    if isinstance(exc, SSEError):
        return ProviderError(provider, "bad_stream", str(exc)[:300], retryable=True)
    return ProviderError(provider, "connection_error", "the provider could not be reached or dropped the "
                         f"connection ({type(exc).__name__})", retryable=True)


async def status_error(provider: str, response: httpx.Response, secret: str | None) -> ProviderError:
    """An HTTP error answer: retryable per RETRYABLE_STATUS, with the provider's own message."""
    raw = b""
    try:
        async for part in response.aiter_bytes():
            raw += part
            if len(raw) >= ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass  # the status says enough
    status = response.status_code
    return ProviderError(provider, f"http_{status}", clean(f"HTTP {status}: {error_message(raw)}", secret),
                         retryable=status in RETRYABLE_STATUS)


def stream_error(provider: str, data: Any, secret: str | None) -> ProviderError:
    """An error event inside a stream that began with 200 (Anthropic's overloaded_error and the like)."""
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {"message": str(error or data)}
    kind = str(error.get("type") or "stream_error")
    return ProviderError(provider, kind, clean(str(error.get("message", "")), secret),
                         retryable=kind not in REQUEST_ERRORS)


def error_message(raw: bytes) -> str:
    """`error.message` of an OpenAI or Anthropic error body, else the body's start as text."""
    text = raw[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300] or "(no body)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return " ".join(text.split())[:300]


def clean(message: str, secret: str | None) -> str:
    """`message` without our key (an echo of it in a provider's error) or anything shaped like a secret."""
    if secret:
        message = message.replace(secret, "[Filtered]")
    return scrub(message)[:300]
