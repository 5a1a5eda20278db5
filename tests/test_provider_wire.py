"""The model APIs' wire protocols as the providers speak them over httpx (shared/llm/wire.py), under the faults
a stream can have: a line that is not JSON, an error event, a body that ends without its end marker, an
answer that is not an event stream, a provider that cannot be reached, an error echoing our key. Before the
first token each fails over; after it the turn ends `partial` with what was said."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.fakes.chat_fixtures import chat, clear_caches, last, make_assistant, messages, text_of, wait_for


def turn(engine: Any, message: str = "Hello?", **overrides: Any) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """One streamed turn; its events and the stored reply."""
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, **overrides)
    events = chat(engine.client(key), assistant_id=assistant, message=message)
    with engine.db() as conn:
        return events, messages(conn, events[0][1]["conversation_id"])[-1]


@pytest.mark.parametrize(("spoil", "reason"), [("garbled", "bad_stream"), ("error", "server_error"),
                                                ("unterminated", "connection_error")])
def test_an_openai_stream_spoilt_before_the_first_token_fails_over(engine: Any, openai_api: Any, anthropic_api: Any,
                                                                  spoil: str, reason: str) -> None:
    openai_api.spoil(spoil, after=0)
    anthropic_api.reply = "Anthropic answers."
    events, stored = turn(engine)
    done = last(events, "done")
    assert text_of(events) == "Anthropic answers." and done["status"] == "complete"
    assert done["provider"] == "anthropic" and [f["provider"] for f in done["failover"]] == ["openai"]
    assert stored["failover"][0]["reason"] == reason


@pytest.mark.parametrize("spoil", ["garbled", "error", "unterminated"])
def test_an_openai_stream_spoilt_after_text_keeps_the_partial_answer(engine: Any, openai_api: Any,
                                                                     anthropic_api: Any, spoil: str) -> None:
    openai_api.reply, openai_api.chunk_chars = "One two three four five six.", 4
    openai_api.spoil(spoil, after=2)
    events, stored = turn(engine)
    # A body without [DONE] is no complete answer either: the text may have been cut anywhere.
    assert text_of(events) == "One two " and last(events, "done")["status"] == "partial"
    assert last(events, "error")["code"] == "provider_interrupted" and anthropic_api.requests == []
    assert stored["status"] == "partial" and stored["content"] == "One two "


def test_an_anthropic_error_event_before_the_first_token_fails_over(engine: Any, openai_api: Any,
                                                                    anthropic_api: Any) -> None:
    anthropic_api.spoil("error", after=0)
    openai_api.reply = "OpenAI answers."
    events, stored = turn(engine, provider="anthropic", model="claude-haiku-4-5")
    done = last(events, "done")
    assert text_of(events) == "OpenAI answers." and done["provider"] == "openai"
    assert done["failover"] == [{"provider": "anthropic", "reason": "overloaded"}]
    assert stored["failover"][0]["reason"] == "overloaded_error" and stored["failover"][0]["message"] == "Overloaded"


def test_a_garbled_anthropic_line_after_text_ends_the_turn_partial(engine: Any, openai_api: Any,
                                                                   anthropic_api: Any) -> None:
    anthropic_api.reply, anthropic_api.chunk_chars = "Alpha beta gamma delta.", 6
    anthropic_api.spoil("garbled", after=1)
    events, stored = turn(engine, provider="anthropic", model="claude-haiku-4-5")
    assert text_of(events) == "Alpha " and last(events, "done")["status"] == "partial"
    assert "bad_stream" in stored["error"] and openai_api.requests == []


def test_a_page_that_is_not_an_event_stream_fails_over(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    openai_api.not_a_stream()  # a proxy or a wrong base URL answering 200 with HTML
    events, stored = turn(engine)
    assert last(events, "done")["provider"] == "anthropic" and text_of(events) == "Hello from the model."
    assert stored["failover"][0]["reason"] == "bad_stream" and "text/html" in stored["failover"][0]["message"]


def test_an_unreachable_provider_fails_over(engine: Any, openai_api: Any, anthropic_api: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # a port nothing listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    clear_caches()
    events, stored = turn(engine, provider="anthropic", model="claude-haiku-4-5")
    done = last(events, "done")
    assert done["provider"] == "openai" and done["failover"] == [{"provider": "anthropic", "reason": "unreachable"}]
    assert stored["failover"][0]["reason"] == "connection_error"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_provider_error_echoing_our_key_is_stored_without_it(engine: Any, openai_api: Any, anthropic_api: Any,
                                                               provider: str) -> None:
    fake = openai_api if provider == "openai" else anthropic_api
    fake.fail(400, message="The request was refused for the key {key}, sorry.")
    events, stored = turn(engine, providers=[provider])
    assert last(events, "done")["status"] == "failed"  # a 400 is the request's fault: no failover
    record = stored["failover"][0]
    assert record["reason"] == "http_400" and "The request was refused for the key" in record["message"]
    assert fake.api_key not in record["message"] and fake.api_key not in (stored["error"] or "")


def test_the_wire_requests_are_what_the_apis_expect(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    turn(engine)
    sent, headers = openai_api.requests[-1], openai_api.headers[-1]
    assert headers["authorization"] == f"Bearer {openai_api.api_key}"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    # A base URL is set (the stand-in's), so this is a "compatible server": max_tokens, as the SDK path sent.
    assert "max_tokens" in sent and "max_completion_tokens" not in sent
    assert sent["messages"][0]["role"] == "system" and sent["messages"][-1] == {"role": "user", "content": "Hello?"}

    events, _ = turn(engine, provider="anthropic", model="claude-haiku-4-5")
    sent, headers = anthropic_api.requests[-1], anthropic_api.headers[-1]
    assert headers["x-api-key"] == anthropic_api.api_key and headers["anthropic-version"]
    assert sent["stream"] is True and sent["model"] == "claude-haiku-4-5" and sent["max_tokens"] > 0
    assert "temperature" not in sent and sent["messages"] == [{"role": "user", "content": "Hello?"}]
    usage = last(events, "done")["usage"]  # input from message_start, output from message_delta
    assert usage["input_tokens"] > 0 and usage["output_tokens"] == len("Hello from the model.") // 4


def test_a_client_that_leaves_ends_the_providers_stream(engine: Any, openai_api: Any) -> None:
    openai_api.reply, openai_api.delay = "word " * 400, 0.02  # about seven seconds of answer
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    seen = ""
    with engine.client(key).stream("POST", "/api/chat", json={"assistant_id": assistant, "message": "Talk"}) as reply:
        for line in reply.iter_lines():
            seen += line
            if "word word" in seen:
                break  # leaving the block hangs up mid-answer
    assert wait_for(lambda: openai_api.open_streams == 0, timeout=3), "the model kept streaming to nobody"


def test_a_first_token_timeout_hangs_up_before_failing_over(engine: Any, openai_api: Any, anthropic_api: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_FIRST_TOKEN_TIMEOUT_S", "0.5")
    clear_caches()
    openai_api.delay = 3  # the stream begins (200, a role chunk) but its first text would come 3 s later
    events, _ = turn(engine)
    assert last(events, "done")["provider"] == "anthropic"
    # Closed when the turn moved on, not left to run until its text came (3 s later).
    assert wait_for(lambda: openai_api.open_streams == 0, timeout=1.5)


def behind_proxy(monkeypatch: pytest.MonkeyPatch, variable: str, suffix: str = "") -> Any:
    """A connection-counting TCP proxy in front of the stand-in `variable` names, configured in its place."""
    import os
    from urllib.parse import urlsplit

    from tests.fakes.tcp_proxy import TcpProxy

    target = urlsplit(os.environ[variable])
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 80))
    monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}{suffix}")
    clear_caches()
    return proxy


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_turns_reuse_one_connection_to_the_model_api(engine: Any, openai_api: Any, anthropic_api: Any,
                                                     monkeypatch: pytest.MonkeyPatch, provider: str) -> None:
    """A stream read to its end marker gives its connection back: against the real APIs a new one costs a TLS
    handshake (tens of milliseconds) on every turn."""
    variable, suffix, model = (("OPENAI_BASE_URL", "/v1", "gpt-4o-mini") if provider == "openai" else
                               ("ANTHROPIC_BASE_URL", "", "claude-haiku-4-5"))
    proxy = behind_proxy(monkeypatch, variable, suffix)
    try:
        workspace, key = engine.workspace()
        with engine.db() as conn:
            assistant = make_assistant(conn, workspace, provider=provider, model=model)
        client = engine.client(key)
        for n in range(3):
            events = chat(client, assistant_id=assistant, message=f"Question {n}?")
            assert last(events, "done")["provider"] == provider and last(events, "done")["status"] == "complete"
        assert proxy.accepted == 1
    finally:
        proxy.close()
