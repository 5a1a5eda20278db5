"""Feedback: one rating per reply (sending again replaces it), listed per assistant, chat keys on their own."""

from __future__ import annotations

from shared.dialog.conversations import finish_turn, start_turn
from tests.fakes.chat_fixtures import signed_in


def answered(engine, workspace_id, assistant_id, api_key_id=None, visitor_id=None):
    """A stored turn; returns (user message id, assistant message id)."""
    with engine.db() as conn:
        turn = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id, conversation_id=None,
                          user_message="How do I reset my password?", api_key_id=api_key_id, visitor_id=visitor_id)
        reply = finish_turn(conn, workspace_id=workspace_id, conversation_id=turn.conversation_id,
                            content="Use the link on the sign-in page [1].")
    return turn.user_message_id, reply


def setup(engine, name="Acme"):
    workspace_id, admin = engine.workspace(name)
    client = engine.client(admin)
    assistant_id = client.post("/api/assistants", json={"name": "Helper"}).json()["id"]
    return workspace_id, client, assistant_id


def test_one_rating_per_reply_and_sending_again_replaces_it(engine) -> None:
    workspace_id, client, assistant_id = setup(engine)
    _, reply_id = answered(engine, workspace_id, assistant_id)
    first = client.post("/api/feedback", json={"message_id": reply_id, "rating": "down", "comment": "Link is dead"})
    assert first.status_code == 201
    assert first.json()["rating"] == "down" and first.json()["assistant_id"] == assistant_id
    assert first.json()["answer"] == "Use the link on the sign-in page [1]."
    again = client.post("/api/feedback", json={"message_id": reply_id, "rating": 1})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["rating"] == "up" and again.json()["comment"] == "Link is dead"
    with engine.db() as conn:
        rows = conn.execute("SELECT rating, comment FROM feedback").fetchall()
    assert rows == [{"rating": 1, "comment": "Link is dead"}]


def test_bad_feedback_is_refused_with_the_field_named(engine) -> None:
    workspace_id, client, assistant_id = setup(engine)
    question_id, reply_id = answered(engine, workspace_id, assistant_id)
    meh = client.post("/api/feedback", json={"message_id": reply_id, "rating": "meh"})
    assert meh.status_code == 422 and meh.json()["error"]["details"][0]["field"] == "rating"
    on_question = client.post("/api/feedback", json={"message_id": question_id, "rating": "up"})
    assert on_question.status_code == 422 and on_question.json()["error"]["details"][0]["field"] == "message_id"
    unknown = client.post("/api/feedback", json={"message_id": "msg_nope", "rating": "up"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "message_not_found"

    other_workspace, other_client, other_assistant = setup(engine, "Other")
    _, foreign_reply = answered(engine, other_workspace, other_assistant)
    assert client.post("/api/feedback", json={"message_id": foreign_reply, "rating": "up"}).status_code == 404
    assert other_client.post("/api/feedback", json={"message_id": reply_id, "rating": "up"}).status_code == 404


def test_listed_per_assistant_and_rating(engine) -> None:
    workspace_id, client, assistant_id = setup(engine)
    second_assistant = client.post("/api/assistants", json={"name": "Second"}).json()["id"]
    ratings = {}
    for assistant, rating in [(assistant_id, "up"), (assistant_id, "down"), (assistant_id, "up"),
                              (second_assistant, "down")]:
        _, reply_id = answered(engine, workspace_id, assistant)
        ratings[reply_id] = (assistant, rating)
        client.post("/api/feedback", json={"message_id": reply_id, "rating": rating})
    mine = client.get("/api/feedback", params={"assistant_id": assistant_id}).json()
    assert mine["count"] == 3 and {f["assistant_id"] for f in mine["data"]} == {assistant_id}
    downs = client.get("/api/feedback", params={"assistant_id": assistant_id, "rating": "down"}).json()["data"]
    assert [f["rating"] for f in downs] == ["down"]
    first = client.get("/api/feedback", params={"limit": 3}).json()
    rest = client.get("/api/feedback", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert {f["message_id"] for f in first["data"] + rest["data"]} == set(ratings) and rest["next_cursor"] is None
    assert client.get("/api/feedback", params={"limit": 101}).status_code == 422


def test_chat_keys_rate_only_their_own_conversations_and_cannot_list(engine) -> None:
    workspace_id, client, assistant_id = setup(engine)
    keys = [client.post("/api/keys", json={"scope": "chat", "assistant_ids": [assistant_id]}).json()
            for _ in range(2)]
    _, my_reply = answered(engine, workspace_id, assistant_id, api_key_id=keys[0]["id"], visitor_id="user:u1")
    _, their_reply = answered(engine, workspace_id, assistant_id, api_key_id=keys[1]["id"], visitor_id="user:u1")
    chat = engine.client(keys[0]["key"], **signed_in(keys[0]["identity_secret"], "u1"))
    assert chat.post("/api/feedback", json={"message_id": my_reply, "rating": "up"}).status_code == 201
    assert chat.post("/api/feedback", json={"message_id": their_reply, "rating": "down"}).status_code == 404
    assert chat.get("/api/feedback").status_code == 403
