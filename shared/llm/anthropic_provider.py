"""Anthropic messages API (streaming); its base URL setting points it at any compatible endpoint. Spoken
over httpx (shared.llm.wire), not the anthropic SDK, whose import cost a first failover seconds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx

from shared.core.settings import get_settings
from shared.llm import Chunk, LLMRequest, wire
from shared.llm.registry import ProviderSpec

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2026-10-21"  # the messages API version the anthropic SDK pinned in requirements.txt sends


class AnthropicProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.name, self.spec = spec.name, spec

    def key(self) -> str | None:
        return getattr(get_settings(), self.spec.api_key or "", None) or None

    def client(self) -> httpx.AsyncClient:
        settings = get_settings()
        base_url = getattr(settings, self.spec.base_url or "", None) or DEFAULT_BASE_URL
        headers = {"x-api-key": self.key() or "", "anthropic-version": API_VERSION}
        return wire.client(self.name, base_url.rstrip("/"), headers, self.key())

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        return self._events(self.client(), request)

    async def _events(self, client: httpx.AsyncClient, request: LLMRequest) -> AsyncIterator[Chunk]:
        # No temperature: this API generation no longer takes one for the messages API.
        body = {"model": request.model, "system": request.system, "messages": alternating(request.messages),
                "max_tokens": request.max_output_tokens, "stream": True}
        usage = {"input_tokens": 0, "output_tokens": 0}
        async with aclosing(wire.events(client, self.name, "/v1/messages", body, self.key())) as events:
            async for name, event in events:
                if not isinstance(event, dict):
                    continue
                kind = event.get("type") or name
                if kind == "message_start":
                    usage["input_tokens"] = int(((event.get("message") or {}).get("usage") or {}).get("input_tokens")
                                                or 0)
                elif kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield Chunk(text=delta["text"])
                elif kind == "message_delta" and event.get("usage"):
                    usage["output_tokens"] = int(event["usage"].get("output_tokens") or 0)
        yield Chunk(usage=usage)


def alternating(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Messages as Anthropic wants them: starting with a user turn, roles alternating, none empty."""
    out: list[dict[str, str]] = []
    for message in messages:
        if not message["content"].strip():
            continue
        if not out and message["role"] != "user":
            continue  # a leading assistant turn (a greeting) has no user turn before it
        if out and out[-1]["role"] == message["role"]:
            out[-1] = {"role": message["role"], "content": out[-1]["content"] + "\n\n" + message["content"]}
        else:
            out.append({"role": message["role"], "content": message["content"]})
    return out
