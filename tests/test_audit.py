"""GET /api/audit: admin actions with who and when, newest first, filtered, paginated, per workspace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.guard.audit import record
from shared.guard.auth import Principal
from tests.fakes.chat_fixtures import new_chat_key


def test_admin_actions_are_listed_newest_first_with_actor(engine) -> None:
    ws, admin_key = engine.workspace()
    admin = engine.client(admin_key)
    created = new_chat_key(engine, admin_key, name="widget")
    assert admin.delete(f"/api/keys/{created['id']}").status_code == 200
    with engine.db() as conn:
        admin_key_id = conn.execute("SELECT id FROM api_keys WHERE workspace_id = %s AND scope = 'admin'",
                                    (ws,)).fetchone()["id"]

    reply = admin.get("/api/audit")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["count"] == 2 and body["next_cursor"] is None
    assert [e["action"] for e in body["data"]] == ["key.revoked", "key.created"]
    assert {e["actor"] for e in body["data"]} == {f"key:{admin_key_id}"}
    assert body["data"][0]["target"] == created["id"]
    assert body["data"][1]["details"] == {"scope": "chat", "name": "widget"}
    assert datetime.fromisoformat(body["data"][0]["created_at"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_filters_and_pagination(engine) -> None:
    ws, admin_key = engine.workspace()
    principal = Principal(workspace_id=ws, scope="admin", actor="user:ada@example.com")
    with engine.db() as conn:
        for i in range(5):
            record(conn, principal, "source.added", f"src_{i}")
        record(conn, principal, "template.updated", "tpl_1", {"version": 2})
        conn.execute("UPDATE audit_log SET created_at = now() - interval '3 days' WHERE target = 'src_0'")
    admin = engine.client(admin_key)

    assert admin.get("/api/audit", params={"action": "template.updated"}).json()["count"] == 1
    assert admin.get("/api/audit", params={"action": "source.*"}).json()["count"] == 5
    assert admin.get("/api/audit", params={"action": "source"}).json()["count"] == 0  # exact unless "*"
    assert admin.get("/api/audit", params={"action": "%"}).json()["count"] == 0       # no LIKE wildcards
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert admin.get("/api/audit", params={"since": since}).json()["count"] == 5

    seen, cursor = [], None
    while True:
        page = admin.get("/api/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["target"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["tpl_1", "src_4", "src_3", "src_2", "src_1", "src_0"]


def test_audit_is_admin_only_and_workspace_scoped(engine) -> None:
    _, admin_key = engine.workspace("A")
    _, other_key = engine.workspace("B")
    admin = engine.client(admin_key)
    chat_key = new_chat_key(engine, admin_key)["key"]
    engine.client(other_key).post("/api/keys", json={"name": "theirs", "scope": "admin"})

    reply = engine.client(chat_key).get("/api/audit")
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "admin_key_required"
    assert engine.client().get("/api/audit").status_code == 401
    mine = admin.get("/api/audit").json()["data"]
    assert [e["action"] for e in mine] == ["key.created"] and "theirs" not in str(mine)
    theirs = engine.client(other_key).get("/api/audit").json()["data"]
    assert [e["details"]["name"] for e in theirs] == ["theirs"]


def test_bad_queries_get_clear_4xx(engine) -> None:
    _, admin_key = engine.workspace()
    admin = engine.client(admin_key)
    for params in ({"limit": 0}, {"limit": 1000}, {"since": "yesterday"}, {"cursor": "not-a-cursor"},
                   {"cursor": "WyJhYmMiXQ"}, {"action": "x" * 101}):  # WyJhYmMiXQ = ["abc"]
        reply = admin.get("/api/audit", params=params)
        assert reply.status_code == 422, (params, reply.text)
        assert reply.json()["error"]["code"] == "validation_error"
