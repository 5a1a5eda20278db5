"""A chat turn under faults of the parts it waits on: the database connection dropping while the answer
streams (the reply is still stored, once, or the client is told), an embeddings API or a Redis that
fails or hangs (the turn degrades instead of waiting), and what clients may see of provider failures."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from shared.dialog.conversations import finish_turn, start_turn
from tests.fakes.chat_fixtures import (
    clear_caches,
    last,
    make_assistant,
    messages,
    new_chat_key,
    parse_sse,
    text_of,
    wait_for,
)

ANSWER = "This answer streams slowly enough for the database to drop in between. " * 3


def setup(engine: Any, **overrides: Any) -> tuple[str, str, str]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, **overrides)
    return workspace, key, assistant


def kill_connections(engine: Any, refuse_new: bool = False) -> int:
    """pg_terminate_backend for every connection to the test's database (the request's among them)."""
    database = conninfo_to_dict(engine.dsn)["dbname"]
    with psycopg.connect(engine.stack.admin_dsn, autocommit=True) as admin:
        if refuse_new:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchall()
    return len(rows)


def allow_connections(engine: Any) -> None:
    database = conninfo_to_dict(engine.dsn)["dbname"]
    with psycopg.connect(engine.stack.admin_dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def stream_and_kill(engine: Any, key: str, assistant: str, refuse_new: bool = False) -> list[tuple[str, Any]]:
    """Stream a turn and kill the database connections once the first text arrived."""
    body, killed = [], False
    client = httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    with client, client.stream("POST", "/api/chat", json={"assistant_id": assistant, "message": "Explain"}) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            body.append(line)
            if line.startswith("event: delta") and not killed:
                assert kill_connections(engine, refuse_new) >= 1
                killed = True
    return parse_sse("\n".join(body))


def test_the_reply_is_stored_once_when_the_connection_drops_mid_stream(engine, openai_api) -> None:
    openai_api.reply, openai_api.delay = ANSWER, 0.01
    workspace, key, assistant = setup(engine)
    events = stream_and_kill(engine, key, assistant)
    done = last(events, "done")
    assert text_of(events) == ANSWER
    assert done["status"] == "complete" and done["stored"] is True and "error" not in [n for n, _ in events]
    with engine.db() as conn:
        stored = messages(conn, last(events, "conversation")["conversation_id"])
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1]["content"] == ANSWER and stored[1]["id"] == done["message_id"]


def test_a_reply_that_cannot_be_stored_says_so_and_carries_its_text(engine, openai_api) -> None:
    openai_api.reply, openai_api.delay = ANSWER, 0.01
    workspace, key, assistant = setup(engine)
    try:
        events = stream_and_kill(engine, key, assistant, refuse_new=True)
    finally:
        allow_connections(engine)
    done = last(events, "done")
    assert last(events, "error")["code"] == "store_failed"
    assert done["stored"] is False and done["message_id"] is None and done["text"] == ANSWER
    assert done["error"]["code"] == "store_failed" and done["status"] == "complete"
    with engine.db() as conn:
        stored = messages(conn, last(events, "conversation")["conversation_id"])
    assert [m["role"] for m in stored] == ["user"]  # the acknowledged message is kept; the reply is not there


def post_and_kill(engine: Any, openai_api: Any, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST a non-streaming turn; while the model answers, kill the connections and refuse new ones."""
    result: dict[str, Any] = {}

    def ask() -> None:
        with httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            result["reply"] = client.post(path, json=body)

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        wait_for(lambda: openai_api.requests)  # the user message is stored, the model is answering
        kill_connections(engine, refuse_new=True)
        asking.join(30)
    finally:
        allow_connections(engine)
    return result["reply"]


def test_the_json_answer_says_when_the_reply_was_not_stored(engine, openai_api) -> None:
    openai_api.reply, openai_api.delay = ANSWER, 0.01
    workspace, key, assistant = setup(engine)
    reply = post_and_kill(engine, openai_api, key, "/api/chat",
                          {"assistant_id": assistant, "message": "Explain", "stream": False})
    answer = reply.json()
    assert reply.status_code == 200 and answer["content"] == ANSWER and answer["stored"] is False
    assert answer["error"]["code"] == "store_failed"


def test_the_openai_face_says_when_the_reply_was_not_stored(engine, openai_api) -> None:
    openai_api.reply, openai_api.delay = ANSWER, 0.01
    workspace, key, assistant = setup(engine)
    reply = post_and_kill(engine, openai_api, key, "/api/v1/chat/completions",
                          {"model": assistant, "messages": [{"role": "user", "content": "Explain"}]})
    completion = reply.json()
    assert completion["choices"][0]["message"]["content"] == ANSWER and completion["stored"] is False


def test_finish_turn_with_the_same_id_stores_the_reply_once(engine) -> None:
    from shared.dialog.conversations import new_message_id

    workspace, key, assistant = setup(engine)
    with engine.db() as conn:
        turn = start_turn(conn, workspace_id=workspace, assistant_id=assistant, conversation_id=None,
                          user_message="Hi")
        reply_id = new_message_id()
        ids = [finish_turn(conn, workspace_id=workspace, conversation_id=turn.conversation_id, content="Hello!",
                           message_id=reply_id) for _ in range(2)]  # a retry after an ambiguous commit
        stored = messages(conn, turn.conversation_id)
    assert ids == [reply_id, reply_id]
    assert [(m["role"], m["content"]) for m in stored] == [("user", "Hi"), ("assistant", "Hello!")]


def test_a_failing_embeddings_api_is_asked_once_per_turn_then_keywords_answer(engine, openai_api) -> None:
    openai_api.embedding_status = 503
    workspace, key, assistant = setup(engine, retrieval={"mode": "hybrid"})
    reply = engine.client(key).post("/api/chat", json={"assistant_id": assistant, "message": "Refund policy?"})
    events = parse_sse(reply.text)
    assert last(events, "done")["status"] == "complete"
    # One bounded attempt set (our two tries, no SDK retries inside them), reused by retrieval.
    assert 1 <= openai_api.embedding_attempts <= 2


def test_a_hung_embeddings_api_does_not_hold_the_turn(engine, openai_api, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDDING_QUERY_TIMEOUT_S", "0.5")
    clear_caches()
    openai_api.embedding_hang = 60
    workspace, key, assistant = setup(engine, retrieval={"mode": "hybrid"})
    # The client gives up long before the stalled API would answer: the turn must not wait for it.
    with httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=15) as client:
        events = parse_sse(client.post("/api/chat", json={"assistant_id": assistant, "message": "Hello?"}).text)
    assert last(events, "done")["status"] == "complete" and text_of(events) == "Hello from the model."


def test_a_stalled_redis_costs_a_turn_one_timeout_and_limits_fail_open(engine, openai_api,
                                                                        redis_proxy, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_BREAKER_S", "60")  # longer than any turn, however busy the machine
    clear_caches()
    workspace, key, assistant = setup(engine)
    redis_proxy.set_mode("blackhole")
    with httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=15) as client:
        events = parse_sse(client.post("/api/chat", json={"assistant_id": assistant, "message": "Hello?"}).text)
    assert last(events, "done")["status"] == "complete" and text_of(events) == "Hello from the model."
    # The first call waited REDIS_TIMEOUT_S; the breaker kept every later call of the turn off the wire.
    assert redis_proxy.requests_seen == 1
    redis_proxy.set_mode("pass")


def test_clients_see_coarse_failover_reasons_and_never_the_providers_words(engine, openai_api,
                                                                           anthropic_api) -> None:
    openai_api.fail(503)
    workspace, key, assistant = setup(engine)
    reply = engine.client(key).post("/api/chat", json={"assistant_id": assistant, "message": "Hi"})
    done = last(parse_sse(reply.text), "done")
    assert done["failover"] == [{"provider": "openai", "reason": "server_error"}]
    assert "Scripted" not in reply.text  # the stand-in's error text ("Scripted failure 503.")
    with engine.db() as conn:
        stored = conn.execute("SELECT failover FROM messages WHERE id = %s", (done["message_id"],)).fetchone()
    assert "Scripted failure 503." in stored["failover"][0]["message"]  # kept for admins


def test_a_chat_key_reading_the_conversation_back_sees_coarse_reasons_only(engine, openai_api,
                                                                          anthropic_api) -> None:
    openai_api.fail(503)
    anthropic_api.fail(529)
    workspace, admin_key, assistant = setup(engine)
    client = engine.client(new_chat_key(engine, admin_key, assistant)["key"])
    events = parse_sse(client.post("/api/chat", json={"assistant_id": assistant, "message": "Hi"}).text)
    assert last(events, "done")["status"] == "failed"
    conversation_id = last(events, "conversation")["conversation_id"]

    seen_by_widget = client.get(f"/api/conversations/{conversation_id}")
    assert seen_by_widget.status_code == 200, seen_by_widget.text
    reply = seen_by_widget.json()["messages"][-1]
    assert reply["failover"] == [{"provider": "openai", "reason": "server_error"},
                                 {"provider": "anthropic", "reason": "overloaded"}]
    assert reply["error"].startswith("providers_unavailable: ")
    assert "Scripted" not in seen_by_widget.text  # the stand-ins' own error text
    seen_by_admin = engine.client(admin_key).get(f"/api/conversations/{conversation_id}").json()
    assert "Scripted failure 503." in seen_by_admin["messages"][-1]["failover"][0]["message"]


def test_the_title_of_a_redacting_assistant_holds_no_pii(engine, openai_api) -> None:
    workspace, key, assistant = setup(engine, pii_redaction=True)
    reply = engine.client(key).post("/api/chat", json={"assistant_id": assistant,
                                                       "message": "I am jane.doe@example.com, help"})
    conversation = last(parse_sse(reply.text), "conversation")["conversation_id"]
    with engine.db() as conn:
        title = conn.execute("SELECT title FROM conversations WHERE id = %s", (conversation,)).fetchone()["title"]
    assert "jane.doe@example.com" not in title and "[EMAIL_1]" in title
    listed = engine.client(key).get("/api/conversations", params={"assistant_id": assistant}).json()
    assert "jane.doe" not in json.dumps(listed)
