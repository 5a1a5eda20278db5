"""Server-sent events for the chat faces: our native events and the Vercel AI SDK UI message stream (v1).

Both wrap the engine's event stream and always close it, whether the client read to the end, went
away (the engine then stores a partial reply) or the server failed to send.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Send

from shared.llm import close_quietly

Event = tuple[str, Any]
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
UI_STREAM_HEADERS = {**SSE_HEADERS, "x-vercel-ai-ui-message-stream": "v1"}


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def data_line(data: Any) -> bytes:
    return f"data: {_json(data)}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """A streaming response that closes its body iterator however the stream ends.

    Starlette cancels the stream on a disconnect under ASGI 2.3 servers, but under 2.4 a failed send
    just ends the loop and leaves the generator suspended; closing it here runs its cleanup at once.
    """

    def __init__(self, content: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        super().__init__(content, headers=headers)

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await close_quietly(self.body_iterator)


async def relay(events: AsyncIterator[Event], encode: Callable[[AsyncIterator[Event]], AsyncIterator[bytes]]
                ) -> AsyncIterator[bytes]:
    """encode(events), closing `events` when the consumer stops early."""
    encoded = encode(events)
    try:
        async for chunk in encoded:
            yield chunk
    finally:
        await close_quietly(encoded)
        await close_quietly(events)


async def native_events(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """`event: <name>` + `data: <json>`: conversation, delta, error, sources, done."""
    async for name, data in events:
        yield f"event: {name}\ndata: {_json(data)}\n\n".encode()


async def ui_message_chunks(events: AsyncIterator[Event]) -> AsyncIterator[dict[str, Any]]:
    """The engine's events as AI SDK UI message chunks (strict shapes: no keys beyond the protocol's)."""
    text_id: str | None = None
    text_open = False
    async for name, data in events:
        if name == "conversation":
            yield {"type": "start"}
        elif name == "delta":
            if text_id is None:
                text_id, text_open = "text-1", True
                yield {"type": "text-start", "id": text_id}
            yield {"type": "text-delta", "id": text_id, "delta": data["text"]}
        elif name in ("error", "sources", "done") and text_open:
            text_open = False
            yield {"type": "text-end", "id": text_id}
        if name == "error":
            yield {"type": "error", "errorText": data["message"]}
        elif name == "sources":
            for source in data:
                yield source_chunk(source)
        elif name == "done":
            yield {"type": "finish", "messageMetadata": {
                "message_id": data["message_id"], "status": data["status"], "provider": data["provider"],
                "model": data["model"], "usage": data["usage"], "timings": data["timings"],
                "stored": data.get("stored", True)}}


def source_chunk(source: dict[str, Any]) -> dict[str, Any]:
    source_id = str(source.get("chunk_id") or f"source-{source['index']}")
    title = source.get("title") or f"Source {source['index']}"
    if source.get("url"):
        return {"type": "source-url", "sourceId": source_id, "url": source["url"], "title": title}
    return {"type": "source-document", "sourceId": source_id, "mediaType": "text/plain", "title": title}


async def ui_message_stream(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """`data: <chunk>` lines, then `data: [DONE]`."""
    chunks = ui_message_chunks(events)
    try:
        async for chunk in chunks:
            yield data_line(chunk)
    finally:
        await close_quietly(chunks)
    yield b"data: [DONE]\n\n"
