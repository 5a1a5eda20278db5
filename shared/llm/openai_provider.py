"""OpenAI chat completions (streaming, with usage), and any OpenAI-compatible server: the registry line
names the settings holding the key and the base URL (OPENAI_*, or another endpoint's own)."""

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


class OpenAIProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.name, self.spec = spec.name, spec

    def endpoint(self) -> tuple[str | None, str | None]:
        """(key, base URL) from the settings its registry line names; local servers need no key."""
        settings = get_settings()
        return (getattr(settings, self.spec.api_key or "", None) or None,
                getattr(settings, self.spec.base_url or "", None) or None)

    def client(self) -> Any:
        api_key, base_url = self.endpoint()
        return cached_client((self.name, api_key, base_url, tuple(timeouts().items())),
                             lambda: _make_client(api_key, base_url))

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        return self._events(self.client(), request)

    async def _events(self, client: Any, request: LLMRequest) -> AsyncIterator[Chunk]:
        messages = [{"role": "system", "content": request.system}, *request.messages]
        # api.openai.com wants max_completion_tokens (reasoning models refuse max_tokens); compatible
        # servers (Ollama, vLLM, LM Studio) know max_tokens.
        limit = {"max_tokens" if self.endpoint()[1] else "max_completion_tokens": request.max_output_tokens}
        usage: dict[str, int] = {}
        body = {"model": request.model, "messages": messages, "stream": True, "stream_options": {"include_usage": True},
                "temperature": request.temperature, **limit}
        try:
            # The SDK's own post() rather than chat.completions.create(): same auth, timeouts, errors and
            # chunk types, without create()'s recursive parameter transform, which cost ~6 ms per turn
            # before the request left (measured with 16 messages; our body is plain JSON already).
            stream = await client.post("/chat/completions", body=body, cast_to=_chunk_type(), stream=True,
                                       stream_cls=_stream_type())
        except Exception as exc:
            raise classify(self.name, exc) from exc
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = {"input_tokens": chunk.usage.prompt_tokens or 0,
                             "output_tokens": chunk.usage.completion_tokens or 0}
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta else None
                    if text:
                        yield Chunk(text=text)
        except Exception as exc:
            raise classify(self.name, exc) from exc
        finally:
            await close_quietly(stream)
        yield Chunk(usage=usage)


def _chunk_type() -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk


def _stream_type() -> Any:
    from openai import AsyncStream

    return AsyncStream[_chunk_type()]  # type: ignore[misc]  # the chunk type is only known at run time


def _make_client(api_key: str | None, base_url: str | None) -> Any:
    from openai import AsyncOpenAI, Timeout

    # max_retries=0: a retry inside the SDK would delay the failover to the next provider.
    return AsyncOpenAI(api_key=api_key or "not-needed", base_url=base_url or None,
                       max_retries=0, timeout=Timeout(**timeouts()))
