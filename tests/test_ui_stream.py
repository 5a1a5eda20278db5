"""POST /api/chat with the body `useChat` sends: the AI SDK UI message stream, chunk by strict chunk."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.chat_fixtures import make_assistant, messages
from tests.fakes.fixtures import add_page

# PROTOCOLS.md §4 (vercel/ai ui-message-chunks.ts, z.strictObject): required keys, optional keys.
# `finishReason` is left out on purpose: v5 clients refuse it.
CHUNKS: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    "start": ({}, {"messageId": str, "messageMetadata": object}),
    "start-step": ({}, {}),
    "text-start": ({"id": str}, {"providerMetadata": dict}),
    "text-delta": ({"id": str, "delta": str}, {"providerMetadata": dict}),
    "text-end": ({"id": str}, {"providerMetadata": dict}),
    "source-url": ({"sourceId": str, "url": str}, {"title": str, "providerMetadata": dict}),
    "source-document": ({"sourceId": str, "mediaType": str, "title": str},
                        {"filename": str, "providerMetadata": dict}),
    "error": ({"errorText": str}, {}),
    "message-metadata": ({"messageMetadata": object}, {}),
    "finish-step": ({}, {}),
    "finish": ({}, {"messageMetadata": object}),
    "abort": ({}, {}),
}
HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache",
           "x-vercel-ai-ui-message-stream": "v1", "x-accel-buffering": "no"}


def check_chunk(chunk: Any) -> None:
    """Raise AssertionError unless `chunk` is exactly one of the protocol's chunk shapes."""
    assert isinstance(chunk, dict) and isinstance(chunk.get("type"), str), chunk
    kind = chunk["type"]
    if kind.startswith("data-"):
        required, optional = {"data": object}, {"id": str, "transient": bool}
    else:
        assert kind in CHUNKS, f"unknown chunk type {kind!r}"
        required, optional = CHUNKS[kind]
    keys = set(chunk) - {"type"}
    assert set(required) <= keys, f"{kind}: missing {set(required) - keys}"
    assert keys <= set(required) | set(optional), f"{kind}: extra keys {keys - set(required) - set(optional)}"
    for key, expected in {**required, **optional}.items():
        if key in chunk:
            assert isinstance(chunk[key], expected), f"{kind}.{key} is {type(chunk[key]).__name__}"


def read_ui_stream(reply: Any) -> list[dict[str, Any]]:
    """Validate the framing, every chunk and their order; return the chunks."""
    assert reply.status_code == 200, reply.text
    for name, value in HEADERS.items():
        assert reply.headers[name] == value, name
    frames = reply.text.split("\n\n")
    assert frames[-1] == "" and frames[-2] == "data: [DONE]"
    chunks = []
    for frame in frames[:-2]:
        assert frame.startswith("data: ") and "\n" not in frame, frame
        chunk = json.loads(frame[6:])
        check_chunk(chunk)
        chunks.append(chunk)
    kinds = [c["type"] for c in chunks]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("finish") == 1
    open_text: str | None = None
    for chunk in chunks:  # text parts open, take deltas with their id, and close
        if chunk["type"] == "text-start":
            assert open_text is None
            open_text = chunk["id"]
        elif chunk["type"] in ("text-delta", "text-end"):
            assert chunk["id"] == open_text
            open_text = None if chunk["type"] == "text-end" else open_text
    assert open_text is None
    return chunks


def ui_body(chat_id: str, *texts: str, **extra: Any) -> dict[str, Any]:
    roles = ["user", "assistant"]
    return {"id": chat_id, "trigger": "submit-message", "messageId": None, **extra,
            "messages": [{"id": f"m{i}", "role": roles[i % 2], "parts": [{"type": "text", "text": t}]}
                         for i, t in enumerate(texts)]}


def test_use_chat_stream(engine: Any, openai_api: Any) -> None:
    openai_api.reply = "Delivery takes three days [1]. Text sources are cited too [2]."
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
        page = add_page(conn, workspace, assistant, "Delivery", [("Times", "Delivery takes three days.")])
        note = add_page(conn, workspace, assistant, "Note", [("Delivery note", "Delivery by bike.")])
        conn.execute("UPDATE chunks SET url = NULL WHERE id = %s", (note[0]["id"],))
    client = engine.client(key)
    reply = client.post(f"/api/chat?assistant_id={assistant}", json=ui_body("chat-abc_123", "How long is delivery?"))
    chunks = read_ui_stream(reply)
    kinds = [c["type"] for c in chunks]
    assert kinds[:2] == ["start", "text-start"] and kinds[-1] == "finish"
    text = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
    assert text == openai_api.reply
    urls = [c for c in chunks if c["type"] == "source-url"]
    documents = [c for c in chunks if c["type"] == "source-document"]
    assert [(c["sourceId"], c["url"], c["title"]) for c in urls] == [
        (page[0]["id"], "https://docs.example.com/delivery", "Delivery")]
    assert [(c["sourceId"], c["title"], c["mediaType"]) for c in documents] == [(note[0]["id"], "Note", "text/plain")]
    assert kinds.index("text-end") < kinds.index("source-url")
    metadata = chunks[-1]["messageMetadata"]
    assert metadata["status"] == "complete" and metadata["provider"] == "openai"

    # The chat id is the conversation id; the next turn continues it (the stored history is used).
    assert reply.headers["x-conversation-id"] == "chat-abc_123"
    with engine.db() as conn:
        stored = messages(conn, "chat-abc_123")
    assert [m["content"] for m in stored] == ["How long is delivery?", text]
    assert stored[1]["id"] == metadata["message_id"]
    openai_api.reply = "Yes."
    again = client.post("/api/chat", headers={"x-assistant-id": assistant},
                        json=ui_body("chat-abc_123", "How long is delivery?", "tampered", "Really?"))
    read_ui_stream(again)
    assert openai_api.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "How long is delivery?"}, {"role": "assistant", "content": text},
        {"role": "user", "content": "Really?"}]


def test_use_chat_failure_is_a_valid_stream(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    openai_api.fail(500)
    anthropic_api.fail(529)
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    reply = engine.client(key).post("/api/chat", json=ui_body("chat-down", "Hello?", assistant_id=assistant))
    chunks = read_ui_stream(reply)
    assert [c["type"] for c in chunks] == ["start", "error", "finish"]
    assert "try again" in chunks[1]["errorText"] and chunks[-1]["messageMetadata"]["status"] == "failed"


def test_use_chat_ids_and_body_errors(engine: Any, openai_api: Any) -> None:
    workspace, key = engine.workspace()
    other_workspace, other_key = engine.workspace("Other")
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
        other_assistant = make_assistant(conn, other_workspace)
    read_ui_stream(engine.client(key).post("/api/chat", json=ui_body("shared-id", "Hi", assistant_id=assistant)))
    # Another workspace can't use (or discover) the chat id.
    reply = engine.client(other_key).post("/api/chat", json=ui_body("shared-id", "Hi", assistant_id=other_assistant))
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "conversation_not_found"
    assert engine.client(key).get("/api/chat/shared-id/stream").status_code == 204  # nothing to resume
    reply = engine.client(key).post("/api/chat", json=ui_body("new-chat", "Hi"))
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "assistant_id_required"
    reply = engine.client(key).post("/api/chat", json=ui_body("bad id!", "Hi", assistant_id=assistant))
    assert reply.status_code == 422 and reply.json()["error"]["details"][0]["field"] == "id"
    body = ui_body("only-assistant", "Hi", assistant_id=assistant)
    body["messages"][0]["role"] = "assistant"
    reply = engine.client(key).post("/api/chat", json=body)
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "no_user_message"
