"""OpenAI chat completions (streaming, with usage), and any OpenAI-compatible server: the registry line
names the settings holding the key and the base URL (OPENAI_*, or another endpoint's own). Spoken over
httpx (shared.llm.wire), not the openai SDK, whose import a fresh instance's first turn would wait for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx

from shared.core.settings import get_settings
from shared.llm import Chunk, LLMRequest, wire
from shared.llm.registry import ProviderSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.name, self.spec = spec.name, spec

    def endpoint(self) -> tuple[str | None, str | None]:
        """(key, base URL) from the settings its registry line names; local servers need no key."""
        settings = get_settings()
        return (getattr(settings, self.spec.api_key or "", None) or None,
                getattr(settings, self.spec.base_url or "", None) or None)

    def client(self) -> httpx.AsyncClient:
        api_key, base_url = self.endpoint()
        # A keyless local server (Ollama, vLLM) still gets a Bearer header, as the SDK sent one.
        headers = {"Authorization": f"Bearer {api_key or 'not-needed'}"}
        return wire.client(self.name, (base_url or DEFAULT_BASE_URL).rstrip("/"), headers, api_key)

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        return self._events(self.client(), request)

    async def _events(self, client: httpx.AsyncClient, request: LLMRequest) -> AsyncIterator[Chunk]:
        api_key, base_url = self.endpoint()
        messages = [{"role": "system", "content": request.system}, *request.messages]
        # api.openai.com wants max_completion_tokens (reasoning models refuse max_tokens); compatible
        # servers (Ollama, vLLM, LM Studio) know max_tokens.
        limit = {"max_tokens" if base_url else "max_completion_tokens": request.max_output_tokens}
        body = {"model": request.model, "messages": messages, "stream": True, "stream_options": {"include_usage": True},
                "temperature": request.temperature, **limit}
        usage: dict[str, int] = {}
        async with aclosing(wire.events(client, self.name, "/chat/completions", body, api_key)) as chunks:
            async for _, chunk in chunks:
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("usage"):  # the last chunk, with stream_options.include_usage
                    usage = {"input_tokens": int(chunk["usage"].get("prompt_tokens") or 0),
                             "output_tokens": int(chunk["usage"].get("completion_tokens") or 0)}
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                    if text:
                        yield Chunk(text=text)
        yield Chunk(usage=usage)
