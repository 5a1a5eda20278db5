"""OpenAI chat completions (streaming, with usage), and any OpenAI-compatible server via OPENAI_BASE_URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shared.llm import (
    Chunk,
    LLMRequest,
    cached_client,
    classify,
    close_quietly,
    register,
    timeouts,
)
from shared.settings import get_settings


class OpenAIProvider:
    name = "openai"
    default_model = "gpt-4o-mini"

    def configured(self) -> bool:
        # A base URL alone counts: local servers (Ollama, vLLM, LM Studio) need no key.
        settings = get_settings()
        return bool(settings.openai_api_key or settings.openai_base_url)

    def client(self) -> Any:
        settings = get_settings()
        key = ("openai", settings.openai_api_key, settings.openai_base_url, tuple(timeouts().items()))
        return cached_client(key, _make_client)

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        return self._events(self.client(), request)

    async def _events(self, client: Any, request: LLMRequest) -> AsyncIterator[Chunk]:
        settings = get_settings()
        messages = [{"role": "system", "content": request.system}, *request.messages]
        # api.openai.com wants max_completion_tokens (reasoning models refuse max_tokens); compatible
        # servers (Ollama, vLLM, LM Studio) know max_tokens.
        limit = {"max_tokens" if settings.openai_base_url else "max_completion_tokens": request.max_output_tokens}
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


def _make_client() -> Any:
    from openai import AsyncOpenAI, Timeout

    settings = get_settings()
    # max_retries=0: a retry inside the SDK would delay the failover to the next provider.
    return AsyncOpenAI(api_key=settings.openai_api_key or "not-needed", base_url=settings.openai_base_url or None,
                       max_retries=0, timeout=Timeout(**timeouts()))


register("openai")(OpenAIProvider)
