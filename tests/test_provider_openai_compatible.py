"""The `openai_compatible` provider: an OpenAI-compatible server with its own name and settings (Groq,
Together, vLLM, Ollama), next to OpenAI itself; its stand-in is a second OpenAI stand-in with its own key."""

from __future__ import annotations

from typing import Any

import pytest

from scripts._serve import serve_in_thread
from tests.conftest import clear_caches
from tests.fakes.chat_fixtures import chat, last, make_assistant, messages, text_of
from tests.fakes.openai_server import FakeOpenAI

_served: list[tuple[FakeOpenAI, str]] = []


@pytest.fixture
def compatible_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    if not _served:
        fake = FakeOpenAI(api_key="gsk_compatible_server_key")
        _served.append((fake, serve_in_thread(fake.app)[0]))
    fake, url = _served[0]
    fake.reset()
    monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", fake.api_key)
    monkeypatch.setenv("OPENAI_COMPATIBLE_MODEL", "llama-3.1-8b-instant")
    clear_caches()
    return fake


def test_a_template_naming_it_is_answered_by_that_server(engine: Any, openai_api: Any,
                                                         compatible_api: FakeOpenAI) -> None:
    compatible_api.reply = "Answered by the compatible server."
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, provider="openai_compatible", model="qwen2.5-7b-instruct")
    events = chat(engine.client(key), assistant_id=assistant, message="Hello?")
    done = last(events, "done")
    assert text_of(events) == "Answered by the compatible server." and done["status"] == "complete"
    assert (done["provider"], done["model"]) == ("openai_compatible", "qwen2.5-7b-instruct")
    sent = compatible_api.requests[-1]
    assert sent["model"] == "qwen2.5-7b-instruct" and "max_tokens" in sent  # what compatible servers know
    assert compatible_api.headers[-1]["authorization"] == "Bearer gsk_compatible_server_key"
    assert openai_api.requests == []  # OpenAI itself, configured too, was not asked


def test_it_takes_over_when_openai_fails_before_the_first_token(engine: Any, openai_api: Any,
                                                                compatible_api: FakeOpenAI) -> None:
    openai_api.fail(503)
    compatible_api.reply = "The backup answers."
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, providers=["openai", "openai_compatible"])
    events = chat(engine.client(key), assistant_id=assistant, message="Hello?")
    done = last(events, "done")
    assert text_of(events) == "The backup answers."
    assert (done["provider"], done["model"]) == ("openai_compatible", "llama-3.1-8b-instant")
    assert done["failover"] == [{"provider": "openai", "reason": "server_error"}]
    with engine.db() as conn:
        assert messages(conn, events[0][1]["conversation_id"])[-1]["provider"] == "openai_compatible"


def test_without_its_base_url_a_template_naming_it_is_told_what_to_set(engine: Any,
                                                                       openai_api: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, provider="openai_compatible", model="llama3")
    reply = engine.client(key).post("/api/chat", json={"assistant_id": assistant, "message": "Hi"})
    assert reply.status_code == 503
    assert "openai_compatible: set OPENAI_COMPATIBLE_BASE_URL" in reply.json()["error"]["message"]
