"""Conversations: the chat path's helpers (one statement per step, no Redis call) and the admin routes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.core.db import Row, fetch_one
from shared.core.errors import NotFound
from shared.dialog.conversations import (
    add_message,
    delete_conversation,
    finish_turn,
    start_turn,
)
from tests.fakes.chat_fixtures import signed_in

CITATION = {"index": 2, "title": "Pricing", "url": "https://example.com/pricing", "chunk_id": "chk_1",
            "quote": "Plans start at 9 EUR.", "score": 0.82}


def create_conversation(conn: psycopg.Connection[Row], *, workspace_id: str, assistant_id: str,
                        external_user_id: str | None = None, metadata: dict[str, Any] | None = None,
                        api_key_id: str | None = None, title: str | None = None) -> str:
    """A new, empty conversation with an assistant of this workspace (NotFound otherwise); returns its id.
    Only tests make conversations this way (the chat path's start_turn makes them in production)."""
    row = fetch_one(conn, """
        INSERT INTO conversations (workspace_id, assistant_id, external_user_id, api_key_id, metadata, title)
        SELECT a.workspace_id, a.id, %s, %s, %s, %s FROM assistants a WHERE a.id = %s AND a.workspace_id = %s
        RETURNING id""", (external_user_id, api_key_id, Jsonb(metadata or {}), title, assistant_id, workspace_id))
    if row is None:
        raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
    return str(row["id"])


class CountingConnection(psycopg.Connection):
    """Counts the statements sent, to hold the chat path to its budget."""

    statements = 0

    def execute(self, query, params=None, **kwargs):
        self.statements += 1
        return super().execute(query, params, **kwargs)


def setup_workspace(engine, name="Acme"):
    workspace_id, admin = engine.workspace(name)
    assistant = engine.client(admin).post("/api/assistants", json={"name": "Helper"}).json()
    return workspace_id, admin, assistant["id"]


def chat_turn(conn, workspace_id, assistant_id, conversation_id, question, answer, **kwargs):
    """One stored turn, as the chat engine stores it."""
    started = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id, conversation_id=conversation_id,
                         user_message=question, **kwargs)
    reply_id = finish_turn(conn, workspace_id=workspace_id, conversation_id=started.conversation_id, content=answer,
                           citations=[CITATION], model="gpt-4o-mini", provider="openai",
                           usage={"input_tokens": 12, "output_tokens": 5},
                           timings={"retrieval_ms": 1.5, "first_token_ms": 40, "total_ms": 90})
    return started, reply_id


def test_a_turn_costs_one_statement_to_start_and_one_to_finish(engine) -> None:
    workspace_id, _, assistant_id = setup_workspace(engine)
    with CountingConnection.connect(engine.dsn, autocommit=True, row_factory=dict_row) as conn:
        first = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id, conversation_id=None,
                           user_message="What does it cost?", external_user_id="u1", metadata={"page": "/pricing"})
        assert conn.statements == 1
        assert first.history == [] and first.summary is None
        finish_turn(conn, workspace_id=workspace_id, conversation_id=first.conversation_id, content="9 EUR [1].",
                    citations=[CITATION], model="gpt-4o-mini", provider="openai")
        assert conn.statements == 2

        second = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                            conversation_id=first.conversation_id, user_message="And per year?",
                            metadata={"plan": "pro"})
        assert conn.statements == 3
        assert second.conversation_id == first.conversation_id
        assert second.history == [{"role": "user", "content": "What does it cost?"},
                                  {"role": "assistant", "content": "9 EUR [1]."}]
        finish_turn(conn, workspace_id=workspace_id, conversation_id=first.conversation_id, content="",
                    status="failed", error="both providers down")
        third = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                           conversation_id=first.conversation_id, user_message="Mail me at a@b.c",
                           redacted_message="Mail me at [EMAIL]")
        # Failed replies are not history; the summary replaces what it covers.
        assert [m["content"] for m in third.history] == ["What does it cost?", "9 EUR [1].", "And per year?"]
        conn.execute("UPDATE conversations SET summary = 'Asked about prices.', summary_through = "
                     "(SELECT seq FROM messages WHERE id = %s) WHERE id = %s",
                     (second.user_message_id, first.conversation_id))
        fourth = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                            conversation_id=first.conversation_id, user_message="Thanks", history_limit=5)
        assert fourth.summary == "Asked about prices."
        assert fourth.history == [{"role": "user", "content": "Mail me at [EMAIL]"}]
        row = conn.execute("SELECT title, metadata, external_user_id FROM conversations WHERE id = %s",
                           (first.conversation_id,)).fetchone()
    assert row == {"title": "What does it cost?", "metadata": {"page": "/pricing", "plan": "pro"},
                   "external_user_id": "u1"}


def test_start_turn_refuses_conversations_it_may_not_continue(engine) -> None:
    workspace_a, admin_a, assistant_a = setup_workspace(engine, "A")
    workspace_b, _, assistant_b = setup_workspace(engine, "B")
    other_assistant = engine.client(admin_a).post("/api/assistants", json={"name": "Other"}).json()["id"]
    with engine.db() as conn:
        started, _ = chat_turn(conn, workspace_a, assistant_a, None, "Hi", "Hello", api_key_id="key_1")
        cid = started.conversation_id
        refused = [(workspace_b, assistant_b, {}), (workspace_b, assistant_b, {"create_if_missing": True}),
                   (workspace_a, other_assistant, {}),
                   (workspace_a, assistant_a, {"owner_only": True, "api_key_id": "key_2"}),
                   (workspace_a, assistant_a, {"conversation_id": "conv_unknown"})]
        for workspace_id, assistant_id, extra in refused:
            with pytest.raises(NotFound):
                start_turn(conn, user_message="sneaky", **{"workspace_id": workspace_id, "assistant_id": assistant_id,
                                                           "conversation_id": cid, **extra})
        assert conn.execute("SELECT count(*) AS n FROM messages WHERE content = 'sneaky'").fetchone()["n"] == 0

        mine = start_turn(conn, workspace_id=workspace_a, assistant_id=assistant_a, conversation_id=cid,
                          user_message="Again", owner_only=True, api_key_id="key_1")
        assert len(mine.history) == 2
        # The AI SDK names a new chat itself.
        named = start_turn(conn, workspace_id=workspace_a, assistant_id=assistant_a, conversation_id="chat-xyz",
                           user_message="New", create_if_missing=True)
        assert named.conversation_id == "chat-xyz" and named.history == []
        with pytest.raises(NotFound):
            add_message(conn, workspace_id=workspace_b, conversation_id=cid, role="user", content="x")
        with pytest.raises(NotFound):
            create_conversation(conn, workspace_id=workspace_b, assistant_id=assistant_a)


def test_a_turn_makes_no_redis_call_for_history_and_reads_every_write(engine) -> None:
    """History lives in Postgres only: no copy to fill, no tombstone to write on every stored message."""
    workspace_id, _, assistant_id = setup_workspace(engine)
    redis = engine.stack.local.redis
    redis.flushdb()
    with engine.db() as conn:
        cid = create_conversation(conn, workspace_id=workspace_id, assistant_id=assistant_id)
        add_message(conn, workspace_id=workspace_id, conversation_id=cid, role="user", content="one")
        finish_turn(conn, workspace_id=workspace_id, conversation_id=cid, content="two", citations=[], model="m",
                    provider="offline", failover=None, usage={}, timings={}, status="complete", error=None)
        # A change behind the helpers' back is seen at once: there is no copy to go stale.
        conn.execute("UPDATE messages SET content = 'edited' WHERE conversation_id = %s AND role = 'user'", (cid,))
        turn = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id, conversation_id=cid,
                          user_message="three")
        assert [(m["role"], m["content"]) for m in turn.history] == [("user", "edited"), ("assistant", "two")]
        delete_conversation(conn, workspace_id, cid)
    assert redis.keys("hist:*") == []


def seed(engine, workspace_id, assistant_id, user, turns=1, api_key_id=None):
    with engine.db() as conn:
        cid = None
        for n in range(turns):
            # Through a chat key, the conversation belongs to the verified user (visitor "user:<id>").
            started, _ = chat_turn(conn, workspace_id, assistant_id, cid, f"Question {n}", f"Answer {n} [1]",
                                   external_user_id=user, api_key_id=api_key_id,
                                   visitor_id=f"user:{user}" if api_key_id else None)
            cid = started.conversation_id
    return cid


def test_list_filters_and_pages(engine) -> None:
    workspace_id, admin, assistant_id = setup_workspace(engine)
    client = engine.client(admin)
    other_assistant = client.post("/api/assistants", json={"name": "Other"}).json()["id"]
    ids = [seed(engine, workspace_id, assistant_id, user=f"user{n % 2}") for n in range(5)]
    other = seed(engine, workspace_id, other_assistant, user="user0")
    with engine.db() as conn:
        conn.execute("UPDATE conversations SET updated_at = '2024-01-01T12:00:00Z' WHERE id = %s", (ids[0],))

    everything = client.get("/api/conversations", params={"limit": 100}).json()
    assert everything["count"] == 6 and everything["data"][0]["id"] == other
    assert everything["data"][0]["message_count"] == 2 and everything["next_cursor"] is None
    by_assistant = client.get("/api/conversations", params={"assistant_id": assistant_id}).json()["data"]
    assert {c["id"] for c in by_assistant} == set(ids)
    by_user = client.get("/api/conversations", params={"user_id": "user1"}).json()["data"]
    assert {c["id"] for c in by_user} == {ids[1], ids[3]} and by_user[0]["user_id"] == "user1"
    old = client.get("/api/conversations", params={"until": "2024-06-01"}).json()["data"]
    assert [c["id"] for c in old] == [ids[0]]
    recent = client.get("/api/conversations", params={"since": "2025-01-01T00:00:00Z"}).json()["data"]
    assert ids[0] not in {c["id"] for c in recent} and len(recent) == 5

    seen, cursor = [], None
    while True:
        page = client.get("/api/conversations", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [c["id"] for c in everything["data"]]
    by_offset = client.get("/api/conversations", params={"limit": 2, "offset": 4}).json()
    assert [c["id"] for c in by_offset["data"]] == seen[4:]

    too_many = client.get("/api/conversations", params={"limit": 101})
    assert too_many.status_code == 422 and "limit" in too_many.json()["error"]["message"]
    both = client.get("/api/conversations", params={"cursor": cursor or "x", "offset": 2})
    assert both.status_code == 422
    assert client.get("/api/conversations", params={"since": "yesterday-ish"}).status_code == 422


def test_read_returns_messages_in_order_with_what_was_stored(engine) -> None:
    workspace_id, admin, assistant_id = setup_workspace(engine)
    client = engine.client(admin)
    cid = seed(engine, workspace_id, assistant_id, user="u1", turns=2)
    conversation = client.get(f"/api/conversations/{cid}").json()
    assert conversation["title"] == "Question 0" and conversation["user_id"] == "u1"
    messages = conversation["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "Question 0"), ("assistant", "Answer 0 [1]"), ("user", "Question 1"), ("assistant", "Answer 1 [1]")]
    reply = messages[1]
    assert reply["citations"] == [CITATION] and reply["model"] == "gpt-4o-mini" and reply["provider"] == "openai"
    assert reply["usage"] == {"input_tokens": 12, "output_tokens": 5} and reply["timings"]["first_token_ms"] == 40
    assert reply["status"] == "complete" and reply["created_at"]

    first = client.get(f"/api/conversations/{cid}/messages", params={"limit": 3}).json()
    rest = client.get(f"/api/conversations/{cid}/messages", params={"cursor": first["next_cursor"]}).json()
    assert [m["id"] for m in first["data"] + rest["data"]] == [m["id"] for m in messages]
    assert rest["next_cursor"] is None


def test_export_as_json_and_markdown(engine) -> None:
    workspace_id, admin, assistant_id = setup_workspace(engine)
    client = engine.client(admin)
    cid = seed(engine, workspace_id, assistant_id, user="u1")
    as_json = client.get(f"/api/conversations/{cid}/export", params={"format": "json"})
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"] == f'attachment; filename="{cid}.json"'
    assert [m["content"] for m in as_json.json()["messages"]] == ["Question 0", "Answer 0 [1]"]

    as_md = client.get(f"/api/conversations/{cid}/export", params={"format": "markdown"})
    assert as_md.headers["content-type"].startswith("text/markdown")
    assert as_md.headers["content-disposition"] == f'attachment; filename="{cid}.md"'
    text = as_md.text
    assert text.startswith("# Question 0\n") and "## User · " in text and "## Assistant · " in text
    assert "Answer 0 [1]" in text
    assert "2. [Pricing](https://example.com/pricing)\n   > Plans start at 9 EUR." in text
    assert text.index("Question 0\n\n## Assistant") > 0
    assert client.get(f"/api/conversations/{cid}/export", params={"format": "pdf"}).status_code == 422


def test_delete_removes_messages_and_feedback(engine) -> None:
    workspace_id, admin, assistant_id = setup_workspace(engine)
    client = engine.client(admin)
    cid = seed(engine, workspace_id, assistant_id, user="u1")
    reply_id = client.get(f"/api/conversations/{cid}").json()["messages"][1]["id"]
    assert client.post("/api/feedback", json={"message_id": reply_id, "rating": "up"}).status_code == 201
    assert client.delete(f"/api/conversations/{cid}").status_code == 204
    with engine.db() as conn:
        counts = conn.execute("""SELECT (SELECT count(*) FROM conversations) AS c, (SELECT count(*) FROM messages) AS m,
                                        (SELECT count(*) FROM feedback) AS f""").fetchone()
    assert counts == {"c": 0, "m": 0, "f": 0}
    assert client.get(f"/api/conversations/{cid}").status_code == 404
    assert client.delete(f"/api/conversations/{cid}").status_code == 404


def test_another_workspace_conversation_is_not_found_on_every_route(engine) -> None:
    workspace_id, admin_a, assistant_id = setup_workspace(engine, "A")
    _, admin_b = engine.workspace("B")
    cid = seed(engine, workspace_id, assistant_id, user="u1")
    other = engine.client(admin_b)
    for method, path in [("GET", ""), ("GET", "/messages"), ("GET", "/export"), ("DELETE", "")]:
        reply = other.request(method, f"/api/conversations/{cid}{path}")
        assert reply.status_code == 404, (method, path)
        assert reply.json()["error"]["code"] == "conversation_not_found"
    assert other.get("/api/conversations").json()["data"] == []
    assert engine.client(admin_a).get(f"/api/conversations/{cid}").status_code == 200


def test_chat_keys_read_only_their_own_conversations(engine) -> None:
    workspace_id, admin, assistant_id = setup_workspace(engine)
    client = engine.client(admin)
    keys = [client.post("/api/keys", json={"scope": "chat", "assistant_ids": [assistant_id]}).json()
            for _ in range(2)]
    mine = seed(engine, workspace_id, assistant_id, user="u1", api_key_id=keys[0]["id"])
    theirs = seed(engine, workspace_id, assistant_id, user="u1", api_key_id=keys[1]["id"])  # same user, other key
    by_admin = seed(engine, workspace_id, assistant_id, user="u1")
    chat = engine.client(keys[0]["key"], **signed_in(keys[0]["identity_secret"], "u1"))
    assert chat.get(f"/api/conversations/{mine}").json()["messages"][0]["content"] == "Question 0"
    assert chat.get(f"/api/conversations/{mine}/messages").status_code == 200
    assert chat.get(f"/api/conversations/{mine}/export", params={"format": "markdown"}).status_code == 200
    for cid in (theirs, by_admin):
        assert chat.get(f"/api/conversations/{cid}").status_code == 404
        assert chat.get(f"/api/conversations/{cid}/export").status_code == 404
    assert chat.get("/api/conversations").status_code == 403
    assert chat.delete(f"/api/conversations/{mine}").status_code == 403
    assert client.get(f"/api/conversations/{mine}").status_code == 200
