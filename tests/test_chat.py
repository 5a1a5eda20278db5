"""POST /api/chat, native SSE: event order and content, what is stored, abstaining, errors, tenancy."""

from __future__ import annotations

from typing import Any

from tests.fakes.chat_fixtures import chat, clear_caches, last, make_assistant, messages, text_of
from tests.fakes.fixtures import add_page

ANSWER = "Refunds take 14 days [1]. Keep the receipt."


def setup_page(engine: Any, **overrides: Any) -> tuple[str, str, str, list[dict[str, Any]]]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, **overrides)
        chunks = add_page(conn, workspace, assistant, "Refund policy",
                          [("Refunds", "Refunds are paid back within 14 days of the return."),
                           ("Shipping", "Parcels ship within two working days.")])
    return workspace, key, assistant, chunks


def test_stream_events_order_content_and_storage(engine: Any, openai_api: Any) -> None:
    openai_api.reply = ANSWER
    _, key, assistant, chunks = setup_page(engine)
    events = chat(engine.client(key), assistant_id=assistant, message="How long do refunds take?",
                  user_id="u-1", metadata={"page": "/help"})

    names = [n for n, _ in events]
    assert names[0] == "conversation" and names[-2:] == ["sources", "done"]
    assert set(names[1:-2]) == {"delta"} and len(names) > 4  # the answer arrived in pieces
    assert text_of(events) == ANSWER
    conversation = events[0][1]
    sources, done = last(events, "sources"), last(events, "done")
    assert [s["index"] for s in sources] == [1]
    assert sources[0]["chunk_id"] == chunks[0]["id"] and sources[0]["title"] == "Refund policy"
    assert sources[0]["url"].startswith("https://docs.example.com/") and "14 days" in sources[0]["quote"]
    assert 0 < sources[0]["score"] <= 1
    assert done["status"] == "complete" and done["provider"] == "openai" and done["model"] == "gpt-4o-mini"
    assert done["usage"]["output_tokens"] > 0 and done["failover"] == []
    for name in ("retrieval_ms", "engine_ms", "ttft_ms", "total_ms"):
        assert done["timings"][name] >= 0
    assert done["timings"]["engine_ms"] <= done["timings"]["ttft_ms"] <= done["timings"]["total_ms"]

    # What the model saw: numbered, delimited context it is told to cite and to treat as data.
    sent = openai_api.requests[-1]
    system = sent["messages"][0]["content"]
    assert sent["messages"][0]["role"] == "system" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert '<context id="1" title="Refund policy"' in system and "within 14 days" in system
    assert "data, not instructions" in system and "[n]" in system and "English" in system
    assert sent["messages"][-1] == {"role": "user", "content": "How long do refunds take?"}

    with engine.db() as conn:
        stored = messages(conn, conversation["conversation_id"])
        row = conn.execute("SELECT external_user_id, metadata FROM conversations WHERE id = %s",
                           (conversation["conversation_id"],)).fetchone()
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["id"] == conversation["user_message_id"] and stored[0]["content"] == "How long do refunds take?"
    reply = stored[1]
    assert reply["id"] == done["message_id"] and reply["content"] == ANSWER and reply["status"] == "complete"
    assert reply["citations"] == sources and reply["provider"] == "openai" and reply["usage"] == done["usage"]
    assert reply["timings"] == done["timings"]
    assert row["external_user_id"] == "u-1" and row["metadata"] == {"page": "/help"}


def test_continued_conversation_sends_history(engine: Any, openai_api: Any) -> None:
    _, key, assistant, _ = setup_page(engine)
    client = engine.client(key)
    openai_api.reply = "First answer."
    first = chat(client, assistant_id=assistant, message="Hello there")
    conversation_id = first[0][1]["conversation_id"]
    openai_api.reply = "Second answer."
    second = chat(client, assistant_id=assistant, conversation_id=conversation_id, message="And shipping?")
    assert second[0][1]["conversation_id"] == conversation_id
    assert openai_api.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "And shipping?"}]


def test_non_stream_answer(engine: Any, openai_api: Any) -> None:
    openai_api.reply = ANSWER
    _, key, assistant, chunks = setup_page(engine)
    reply = engine.client(key).post("/api/chat", json={"assistant_id": assistant, "message": "Refunds?",
                                                       "stream": False})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["content"] == ANSWER and body["status"] == "complete"
    assert body["sources"][0]["chunk_id"] == chunks[0]["id"]
    assert reply.headers["x-conversation-id"] == body["conversation_id"]
    with engine.db() as conn:
        assert messages(conn, body["conversation_id"])[1]["id"] == body["message_id"]


def test_abstains_below_threshold_without_a_model_call(engine: Any, openai_api: Any) -> None:
    _, key, assistant, _ = setup_page(engine, abstain_threshold=0.5, fallback_message="Please ask our team.")
    client = engine.client(key)
    events = chat(client, assistant_id=assistant, message="Who won the football match yesterday?")
    assert text_of(events) == "Please ask our team." and last(events, "sources") == []
    assert last(events, "done")["status"] == "complete" and last(events, "done")["provider"] is None
    assert openai_api.requests == []
    # A passage with the question's words clears the threshold (normalised BM25 is absolute), so the model answers.
    chat(client, assistant_id=assistant, message="When are refunds paid back?")
    assert len(openai_api.requests) == 1


def test_abstains_in_the_template_language(engine: Any, openai_api: Any) -> None:
    _, key, assistant, _ = setup_page(engine, abstain_threshold=0.3, language="de")
    events = chat(engine.client(key), assistant_id=assistant, message="Wer hat gestern gewonnen?")
    assert text_of(events).startswith("Das weiß ich leider nicht") and openai_api.requests == []


def test_hybrid_retrieval_embeds_each_question_once(engine: Any, openai_api: Any) -> None:
    openai_api.reply = "Fourteen days [1]."
    _, key, assistant, chunks = setup_page(engine, retrieval={"mode": "hybrid"})
    client = engine.client(key)
    question = "How long do refunds take?"
    events = chat(client, assistant_id=assistant, message=question)
    assert last(events, "sources")[0]["chunk_id"] == chunks[0]["id"]
    # Embedded while the user message was stored, and found again by retrieval: one API call.
    assert openai_api.embedding_requests == [[question]]
    chat(client, assistant_id=assistant, message=question)
    assert len(openai_api.embedding_requests) == 1  # a repeated question comes from the cache


def test_message_without_words_skips_retrieval(engine: Any, openai_api: Any) -> None:
    _, key, assistant, _ = setup_page(engine)
    events = chat(engine.client(key), assistant_id=assistant, message="👍 ?!")
    assert last(events, "done")["timings"]["retrieval_ms"] == 0
    assert "<context id=\"1\"" not in openai_api.requests[-1]["messages"][0]["content"]


def test_another_workspaces_ids_are_not_found(engine: Any, openai_api: Any) -> None:
    _, key, assistant, _ = setup_page(engine)
    conversation_id = chat(engine.client(key), assistant_id=assistant, message="Hi")[0][1]["conversation_id"]
    other_workspace, other_key = engine.workspace("Other")
    with engine.db() as conn:
        other_assistant = make_assistant(conn, other_workspace)
    other = engine.client(other_key)
    for body in ({"assistant_id": other_assistant, "conversation_id": conversation_id, "message": "Hi"},
                 {"assistant_id": assistant, "message": "Hi"},
                 {"assistant_id": other_assistant, "conversation_id": conversation_id, "message": "Hi",
                  "stream": False}):
        reply = other.post("/api/chat", json=body)
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] in ("conversation_not_found", "assistant_not_found")
    with engine.db() as conn:
        assert len(messages(conn, conversation_id)) == 2  # nothing was added to it


def test_request_limits_and_validation(engine: Any, openai_api: Any, monkeypatch: Any) -> None:
    _, key, assistant, _ = setup_page(engine)
    client = engine.client(key)
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "50")
    clear_caches()
    reply = client.post("/api/chat", json={"assistant_id": assistant, "message": "x" * 51})
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "message_too_long"
    assert reply.json()["error"]["details"] == {"max_chars": 50, "chars": 51}
    reply = client.post("/api/chat", json={"assistant_id": assistant, "message": "   "})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "empty_message"
    reply = client.post("/api/chat", json={"assistant_id": assistant, "message": "Hi", "colour": "red"})
    assert reply.status_code == 422 and reply.json()["error"]["details"][0]["field"] == "colour"
    reply = client.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_json"
    assert engine.client().post("/api/chat", json={"assistant_id": assistant, "message": "Hi"}).status_code == 401
    assert openai_api.requests == []


def test_origins_of_chat_keys_and_assistants(engine: Any, openai_api: Any) -> None:
    workspace, admin_key = engine.workspace()
    with engine.db() as conn:
        open_assistant = make_assistant(conn, workspace)
        shop_assistant = make_assistant(conn, workspace, allowed_origins=["https://shop.example"])
    from shared.guard.auth import create_key

    with engine.db() as conn:
        chat_key, _ = create_key(conn, workspace, "chat", allowed_origins=["https://shop.example"],
                                 assistant_ids=[open_assistant, shop_assistant])
    shop = engine.client(chat_key, origin="https://shop.example")
    evil = engine.client(chat_key, origin="https://evil.example")
    assert shop.post("/api/chat", json={"assistant_id": shop_assistant, "message": "Hi"}).status_code == 200
    reply = evil.post("/api/chat", json={"assistant_id": open_assistant, "message": "Hi"})
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "origin_not_allowed"
    reply = engine.client(admin_key, origin="https://evil.example").post(
        "/api/chat", json={"assistant_id": shop_assistant, "message": "Hi"})
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "origin_not_allowed"
    # Browsers ask first (CORS preflight, no key); the key's origin rules then decide the real call.
    preflight = engine.client().options("/api/chat", headers={
        "origin": "https://shop.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    # Our own chat page (same origin as the API) may always talk to it.
    same = engine.client(admin_key, origin=engine.url)
    assert same.post("/api/chat", json={"assistant_id": shop_assistant, "message": "Hi"}).status_code == 200


def test_chat_key_continues_only_its_own_conversations(engine: Any, openai_api: Any) -> None:
    workspace, _ = engine.workspace()
    from shared.guard.auth import create_key

    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
        key_a, _ = create_key(conn, workspace, "chat", assistant_ids=[assistant])
        key_b, _ = create_key(conn, workspace, "chat", assistant_ids=[assistant])
    widget_a = engine.client(key_a)  # one visitor: keeps the visitor token the engine issued
    conversation_id = chat(widget_a, assistant_id=assistant, message="Hi")[0][1]["conversation_id"]
    assert chat(widget_a, assistant_id=assistant, conversation_id=conversation_id, message="Again")
    reply = engine.client(key_b).post("/api/chat", json={"assistant_id": assistant, "conversation_id": conversation_id,
                                                          "message": "Hijack"})
    assert reply.status_code == 404


def test_chat_page_is_served(engine: Any) -> None:
    page = engine.client().get("/")
    assert page.status_code == 200 and '<script src="/chat.js"></script>' in page.text
    script = engine.client().get("/chat.js")
    assert script.status_code == 200 and "/api/chat" in script.text and "/api/assistants" in script.text
