"""Providers failing: failover before the first token, errors after it, both down, a client that leaves."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fakes.chat_fixtures import chat, clear_caches, last, make_assistant, messages, text_of, wait_for


@pytest.fixture
def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_FIRST_TOKEN_TIMEOUT_S", "0.5")
    clear_caches()


def assistant_and_key(engine: Any, **overrides: Any) -> tuple[str, str]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        return make_assistant(conn, workspace, **overrides), key


@pytest.mark.parametrize("failure", ["529", "500", "429", "timeout"])
def test_failure_before_first_token_fails_over(engine: Any, openai_api: Any, anthropic_api: Any,
                                              quick_timeouts: None, failure: str) -> None:
    if failure == "timeout":
        openai_api.hang(3)
    else:
        openai_api.fail(int(failure))
    anthropic_api.reply = "Anthropic answers."
    assistant, key = assistant_and_key(engine)
    events = chat(engine.client(key), assistant_id=assistant, message="Hello?")
    done = last(events, "done")
    assert text_of(events) == "Anthropic answers." and done["status"] == "complete"
    assert done["provider"] == "anthropic" and done["model"] == "claude-haiku-4-5"
    # Clients get the provider and a coarse reason; the provider's own words stay with us.
    coarse = {"529": "overloaded", "500": "server_error", "429": "rate_limited", "timeout": "timeout"}[failure]
    assert done["failover"] == [{"provider": "openai", "reason": coarse}]
    assert "error" not in [n for n, _ in events]
    with engine.db() as conn:
        stored = messages(conn, events[0][1]["conversation_id"])[-1]
    reason = "first_token_timeout" if failure == "timeout" else f"http_{failure}"
    assert stored["provider"] == "anthropic"
    assert [(f["provider"], f["model"], f["reason"]) for f in stored["failover"]] == [("openai", "gpt-4o-mini", reason)]
    assert stored["content"] == "Anthropic answers."
    # Anthropic got the same conversation: the system prompt apart, as its own messages.
    assert anthropic_api.requests[-1]["messages"] == [{"role": "user", "content": "Hello?"}]
    assert "data, not instructions" in anthropic_api.requests[-1]["system"]


def test_template_order_anthropic_first(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    anthropic_api.fail(529)
    assistant, key = assistant_and_key(engine, provider="anthropic", model="claude-sonnet-4-5")
    events = chat(engine.client(key), assistant_id=assistant, message="Hi")
    done = last(events, "done")
    assert done["provider"] == "openai" and done["model"] == "gpt-4o-mini"
    assert done["failover"] == [{"provider": "anthropic", "reason": "overloaded"}]
    with engine.db() as conn:
        stored = messages(conn, events[0][1]["conversation_id"])[-1]
    assert stored["failover"][0]["model"] == "claude-sonnet-4-5" and stored["failover"][0]["reason"] == "http_529"
    assert anthropic_api.requests[0]["model"] == "claude-sonnet-4-5"


def test_client_error_does_not_fail_over(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    openai_api.fail(400)
    assistant, key = assistant_and_key(engine)
    events = chat(engine.client(key), assistant_id=assistant, message="Hi")
    assert last(events, "done")["status"] == "failed" and anthropic_api.requests == []
    assert last(events, "error")["code"] == "providers_unavailable"


def test_both_providers_down(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    openai_api.fail(500)
    anthropic_api.fail(529)
    assistant, key = assistant_and_key(engine)
    events = chat(engine.client(key), assistant_id=assistant, message="Is anyone there?")
    assert [n for n, _ in events] == ["conversation", "error", "sources", "done"]
    error, done = last(events, "error"), last(events, "done")
    assert error["code"] == "providers_unavailable" and "kept" in error["message"]
    assert done["status"] == "failed" and done["message_id"]
    assert [f["reason"] for f in done["failover"]] == ["server_error", "overloaded"]
    with engine.db() as conn:
        stored = messages(conn, events[0][1]["conversation_id"])
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "failed")]
    assert stored[0]["content"] == "Is anyone there?" and stored[1]["content"] == ""
    assert stored[1]["error"].startswith("providers_unavailable")

    # Without streaming: a clean 503 that still names the conversation, whose user message is kept.
    openai_api.fail(503)
    anthropic_api.fail(500)
    reply = engine.client(key).post("/api/chat", json={"assistant_id": assistant, "message": "Again?", "stream": False})
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "providers_unavailable"
    with engine.db() as conn:
        stored = messages(conn, reply.json()["error"]["details"]["conversation_id"])
    assert [(m["role"], m["content"]) for m in stored] == [("user", "Again?"), ("assistant", "")]


def test_failure_after_first_token_keeps_the_partial_answer(engine: Any, openai_api: Any,
                                                            anthropic_api: Any) -> None:
    openai_api.reply = "One two three four five six seven."
    openai_api.chunk_chars = 4
    openai_api.break_after(2)
    assistant, key = assistant_and_key(engine)
    events = chat(engine.client(key), assistant_id=assistant, message="Count")
    assert text_of(events) == "One two "
    assert last(events, "error")["code"] == "provider_interrupted"
    assert last(events, "done")["status"] == "partial"
    assert anthropic_api.requests == []  # text had flowed: no failover mid-answer
    with engine.db() as conn:
        stored = messages(conn, events[0][1]["conversation_id"])[-1]
    assert stored["status"] == "partial" and stored["content"] == "One two "


def test_anthropic_overloaded_mid_stream(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    anthropic_api.reply = "Alpha beta gamma delta."
    anthropic_api.break_after(1)
    assistant, key = assistant_and_key(engine, provider="anthropic", model="claude-haiku-4-5")
    events = chat(engine.client(key), assistant_id=assistant, message="Greek?")
    assert text_of(events) == "Alpha " and last(events, "done")["status"] == "partial"
    assert last(events, "error")["message"] == "The model stopped answering (overloaded)."
    with engine.db() as conn:
        stored = messages(conn, events[0][1]["conversation_id"])[-1]
    assert "overloaded_error" in stored["error"]  # the provider's detail is kept for admins


def test_client_that_disconnects_leaves_a_partial_message(engine: Any, openai_api: Any) -> None:
    openai_api.reply = "word " * 80
    openai_api.delay = 0.03
    assistant, key = assistant_and_key(engine)
    conversation_id, seen = None, ""
    client = httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    with client, client.stream("POST", "/api/chat", json={"assistant_id": assistant, "message": "Talk"}) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                conversation_id = data.get("conversation_id", conversation_id)
                seen += data.get("text", "")
            if len(seen) >= 20:
                break  # leaving the block closes the connection mid-answer

    def stored() -> Any:
        with engine.db() as conn:
            rows = messages(conn, conversation_id)
        return rows[1] if len(rows) == 2 else None

    reply_row = wait_for(stored)
    assert reply_row["status"] == "partial" and reply_row["error"].startswith("client_disconnected")
    assert reply_row["content"].startswith(seen) and len(reply_row["content"]) < len("word " * 80)
    assert reply_row["timings"]["ttft_ms"] is not None
