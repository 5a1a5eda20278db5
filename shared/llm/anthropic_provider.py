"""Anthropic messages API (streaming); its base URL setting points it at any compatible endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shared.core.settings import get_settings
from shared.llm import (
    Chunk,
    LLMRequest,
    cached_client,
    classify,
    close_quietly,
    timeouts,
)
from shared.llm.registry import ProviderSpec


class AnthropicProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.name, self.spec = spec.name, spec

    def client(self) -> Any:
        settings = get_settings()
        api_key = getattr(settings, self.spec.api_key or "", None)
        base_url = getattr(settings, self.spec.base_url or "", None) or None
        return cached_client((self.name, api_key, base_url, tuple(timeouts().items())),
                             lambda: _make_client(api_key, base_url))

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        return self._events(self.client(), request)

    async def _events(self, client: Any, request: LLMRequest) -> AsyncIterator[Chunk]:
        # No temperature: this SDK generation no longer takes one for the messages API.
        usage = {"input_tokens": 0, "output_tokens": 0}
        try:
            stream = await client.messages.create(
                model=request.model, system=request.system, messages=alternating(request.messages),
                max_tokens=request.max_output_tokens, stream=True)
        except Exception as exc:
            raise classify(self.name, exc) from exc
        try:
            async for event in stream:
                if event.type == "message_start":
                    usage["input_tokens"] = event.message.usage.input_tokens or 0
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if event.delta.text:
                        yield Chunk(text=event.delta.text)
                elif event.type == "message_delta" and event.usage is not None:
                    usage["output_tokens"] = event.usage.output_tokens or 0
        except Exception as exc:
            raise classify(self.name, exc) from exc
        finally:
            await close_quietly(stream)
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


def _make_client(api_key: str | None, base_url: str | None) -> Any:
    from anthropic import AsyncAnthropic, Timeout

    # max_retries=0: the SDK would otherwise retry 429/5xx/529 twice before we could fail over.
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=Timeout(**timeouts()))

