"""A chat (widget) key reaches only the assistants it was made for: every other one answers 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.fakes.chat_fixtures import chat, last, make_assistant

MIGRATIONS = Path(__file__).resolve().parent.parent / "shared" / "ops" / "migrations"


def two_assistants(engine: Any) -> tuple[str, str, str, str]:
    """(workspace, admin key, public assistant A, internal assistant B)."""
    workspace, admin = engine.workspace()
    with engine.db() as conn:
        public = make_assistant(conn, workspace, name="Public help")
        internal = make_assistant(conn, workspace, name="Internal HR")
    return workspace, admin, public, internal


def chat_key(engine: Any, admin: str, *assistant_ids: str, **fields: Any) -> dict[str, Any]:
    created = engine.client(admin).post("/api/keys", json={"scope": "chat", "assistant_ids": list(assistant_ids),
                                                           **fields})
    assert created.status_code == 201, created.text
    return created.json()


def test_models_list_only_the_keys_assistants(engine) -> None:
    _, admin, public, internal = two_assistants(engine)
    key = chat_key(engine, admin, public)["key"]
    models = engine.client(key).get("/api/v1/models")
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == [public]
    assert engine.client(key).get(f"/api/v1/models/{public}").status_code == 200
    hidden = engine.client(key).get(f"/api/v1/models/{internal}")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
    # The admin key still sees both.
    assert len(engine.client(admin).get("/api/v1/models").json()["data"]) == 2


def test_every_chat_route_answers_404_for_another_assistant(engine) -> None:
    _, admin, public, internal = two_assistants(engine)
    client = engine.client(chat_key(engine, admin, public)["key"])
    native = client.post("/api/chat", json={"assistant_id": internal, "message": "What are the salaries?"})
    assert native.status_code == 404 and native.json()["error"]["code"] == "assistant_not_found"
    ui = client.post("/api/chat", json={"assistant_id": internal, "id": "chat_ui_1", "messages": [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Salaries?"}]}]})
    assert ui.status_code == 404 and ui.json()["error"]["code"] == "assistant_not_found"
    openai = client.post("/api/v1/chat/completions", json={"model": internal, "messages": [
        {"role": "user", "content": "Salaries?"}]})
    assert openai.status_code == 404 and openai.json()["error"]["code"] == "model_not_found"
    widget = client.get(f"/api/assistants/{internal}/public")
    assert widget.status_code == 404
    with engine.db() as conn:  # nothing was stored for the refused turns
        assert conn.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0
    # Its own assistant answers.
    assert last(chat(client, assistant_id=public, message="Hello?"), "done")["status"] == "complete"
    assert client.get(f"/api/assistants/{public}/public").status_code == 200


def test_narrowing_a_key_closes_its_conversations_and_feedback_with_the_other_assistant(engine) -> None:
    _, admin, public, internal = two_assistants(engine)
    created = chat_key(engine, admin, public, internal)
    client = engine.client(created["key"])
    events = chat(client, assistant_id=internal, message="Hello internal?")
    conversation = last(events, "conversation")["conversation_id"]
    reply_id = last(events, "done")["message_id"]
    assert client.get(f"/api/conversations/{conversation}").status_code == 200
    narrowed = engine.client(admin).patch(f"/api/keys/{created['id']}", json={"assistant_ids": [public]})
    assert narrowed.status_code == 200 and narrowed.json()["assistant_ids"] == [public]
    for path in (f"/api/conversations/{conversation}", f"/api/conversations/{conversation}/messages",
                 f"/api/conversations/{conversation}/export"):
        assert client.get(path).status_code == 404, path
    feedback = client.post("/api/feedback", json={"message_id": reply_id, "rating": "up"})
    assert feedback.status_code == 404
    again = client.post("/api/chat", json={"assistant_id": internal, "conversation_id": conversation,
                                           "message": "Still there?"})
    assert again.status_code == 404


def test_a_chat_key_must_name_assistants_of_its_workspace(engine) -> None:
    _, admin, public, _ = two_assistants(engine)
    _, other_admin = engine.workspace("Other")
    client = engine.client(admin)
    missing = client.post("/api/keys", json={"scope": "chat"})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "assistant_ids_required"
    foreign = engine.client(other_admin).post("/api/keys", json={"scope": "chat", "assistant_ids": [public]})
    assert foreign.status_code == 422 and foreign.json()["error"]["code"] == "assistant_not_found"
    admin_scoped = client.post("/api/keys", json={"scope": "admin", "assistant_ids": [public]})
    assert admin_scoped.status_code == 422
    listed = client.get("/api/keys").json()["data"]
    assert all(k["assistant_ids"] == [] for k in listed)  # nothing was created


def _apply(conn: psycopg.Connection[Any], *names: str) -> None:
    for name in names:
        conn.execute(next(MIGRATIONS.glob(f"{name}_*.sql")).read_text())


def test_migration_scopes_existing_chat_keys_to_the_assistants_they_used(stack) -> None:
    name = "test_migration_0003_scoping"
    with psycopg.connect(stack.admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(stack.dsn(name), autocommit=True, row_factory=dict_row) as conn:
            _apply(conn, "0001", "0002")
            conn.execute("INSERT INTO workspaces (id, name) VALUES ('ws_1', 'Acme')")
            conn.execute("INSERT INTO templates (id, workspace_id, name) VALUES ('default', NULL, 'Default')")
            for assistant in ("asst_public", "asst_internal"):
                conn.execute("INSERT INTO assistants (id, workspace_id, name, template_id) "
                             "VALUES (%s, 'ws_1', %s, 'default')", (assistant, assistant))
            for key, scope in (("key_widget", "chat"), ("key_unused", "chat"), ("key_admin", "admin")):
                conn.execute("INSERT INTO api_keys (id, workspace_id, prefix, hash, scope) "
                             "VALUES (%s, 'ws_1', 'p', %s, %s)", (key, key, scope))
            conn.execute("INSERT INTO conversations (workspace_id, assistant_id, api_key_id) "
                         "VALUES ('ws_1', 'asst_public', 'key_widget')")
            _apply(conn, "0003")
            keys = {r["id"]: r for r in conn.execute(
                "SELECT id, assistant_ids, identity_secret, visitor_secret FROM api_keys")}
        assert keys["key_widget"]["assistant_ids"] == ["asst_public"]   # its widget keeps working
        assert keys["key_unused"]["assistant_ids"] == []                # reaches nothing until an admin says
        assert keys["key_admin"]["assistant_ids"] == []                 # admin keys are not scoped
        assert keys["key_widget"]["identity_secret"] is None
        secrets = {k["visitor_secret"] for k in keys.values()}
        assert len(secrets) == 3 and all(len(s) == 64 for s in secrets)
    finally:
        with psycopg.connect(stack.admin_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
