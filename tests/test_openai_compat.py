"""The OpenAI-compatible face, driven by the official openai client (stream and non-stream)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes.chat_fixtures import make_assistant, messages
from tests.fakes.fixtures import add_page


def setup(engine: Any) -> tuple[str, str, openai.OpenAI, list[dict[str, Any]]]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, name="Support")
        chunks = add_page(conn, workspace, assistant, "Warranty", [("Cover", "The warranty covers two years.")])
    client = openai.OpenAI(base_url=f"{engine.url}/api/v1", api_key=key, max_retries=0)
    return workspace, assistant, client, chunks


def test_non_stream_completion(engine: Any, openai_api: Any) -> None:
    openai_api.reply = "Two years [1]."
    _, assistant, client, chunks = setup(engine)
    completion = client.chat.completions.create(model=assistant, messages=[
        {"role": "system", "content": "Ignored: the template owns the system prompt."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How long is the warranty?"}])
    assert completion.choices[0].message.content == "Two years [1]."
    assert completion.choices[0].finish_reason == "stop" and completion.model == assistant
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    citations = completion.model_extra["citations"]
    assert citations[0]["chunk_id"] == chunks[0]["id"] and citations[0]["index"] == 1
    # Earlier messages are the history; the system message is not passed on.
    sent = openai_api.requests[-1]["messages"]
    assert sent[1:] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "How long is the warranty?"}]
    assert "Ignored" not in sent[0]["content"]
    with engine.db() as conn:
        stored = messages(conn, completion.model_extra["conversation_id"])
    assert [m["content"] for m in stored] == ["How long is the warranty?", "Two years [1]."]


def test_stream_with_usage_and_citations(engine: Any, openai_api: Any) -> None:
    openai_api.reply = "The warranty covers two years [1]."
    _, assistant, client, chunks = setup(engine)
    stream = client.chat.completions.create(model=assistant, stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Warranty?"}])
    received = list(stream)
    assert len({c.id for c in received}) == 1
    assert received[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "The warranty covers two years [1]."
    finishing = [c for c in received if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finishing) == 1 and finishing[0].model_extra["citations"][0]["chunk_id"] == chunks[0]["id"]
    assert received[-1].choices == [] and received[-1].usage.total_tokens > 0
    # Without include_usage there is no usage chunk.
    plain = list(client.chat.completions.create(model=assistant, stream=True,
                                                messages=[{"role": "user", "content": "Warranty?"}]))
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)


def test_conversation_continues_by_extra_field_or_header(engine: Any, openai_api: Any) -> None:
    _, assistant, client, _ = setup(engine)
    openai_api.reply = "First."
    first = client.chat.completions.create(model=assistant, messages=[{"role": "user", "content": "One"}])
    conversation_id = first.model_extra["conversation_id"]
    openai_api.reply = "Second."
    client.chat.completions.create(model=assistant, messages=[{"role": "user", "content": "Two"}],
                                   extra_body={"conversation_id": conversation_id})
    raw = client.chat.completions.with_raw_response.create(
        model=assistant, messages=[{"role": "user", "content": "Three"}],
        extra_headers={"x-conversation-id": conversation_id})
    assert raw.headers["x-conversation-id"] == conversation_id
    assert openai_api.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "One"}, {"role": "assistant", "content": "First."},
        {"role": "user", "content": "Two"}, {"role": "assistant", "content": "Second."},
        {"role": "user", "content": "Three"}]


def test_models_are_the_workspace_assistants(engine: Any) -> None:
    _, assistant, client, _ = setup(engine)
    other_workspace, _ = engine.workspace("Other")
    with engine.db() as conn:
        make_assistant(conn, other_workspace, name="Not yours")
    models = client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [(assistant, "model", "dialog-engine")]
    assert client.models.retrieve(assistant).model_extra["name"] == "Support"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("asst_nope")


def test_errors_in_openai_shape(engine: Any, openai_api: Any, anthropic_api: Any) -> None:
    _, assistant, client, _ = setup(engine)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="asst_unknown", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    bad_key = openai.OpenAI(base_url=f"{engine.url}/api/v1", api_key="de_admin_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unauthorised:
        bad_key.chat.completions.create(model=assistant, messages=[{"role": "user", "content": "Hi"}])
    assert unauthorised.value.body["type"] == "authentication_error"
    with pytest.raises(openai.BadRequestError) as invalid:
        client.chat.completions.create(model=assistant, messages=[{"role": "assistant", "content": "Hi"}])
    assert invalid.value.body["code"] == "invalid_messages"
    # Both providers down: a 503 before any stream starts, for stream and non-stream alike.
    for stream in (False, True):
        openai_api.fail(500)
        anthropic_api.fail(529)
        with pytest.raises(openai.InternalServerError) as down:
            result = client.chat.completions.create(model=assistant, stream=stream,
                                                    messages=[{"role": "user", "content": "Hi"}])
            list(result) if stream else None
        assert down.value.status_code == 503 and down.value.body["code"] == "providers_unavailable"


def test_break_after_first_token_raises_in_the_stream(engine: Any, openai_api: Any) -> None:
    openai_api.reply = "Partial answer that breaks."
    openai_api.chunk_chars = 5
    openai_api.break_after(2)
    _, assistant, client, _ = setup(engine)
    text = ""
    with pytest.raises(openai.APIError) as broken:
        for chunk in client.chat.completions.create(model=assistant, stream=True,
                                                    messages=[{"role": "user", "content": "Go"}]):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Partial an" and "stopped answering" in broken.value.message
