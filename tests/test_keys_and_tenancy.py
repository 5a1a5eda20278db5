"""Keys: shown once, hashed, revocable, scoped; a workspace never sees or changes another's records."""

from __future__ import annotations

from tests.fakes.chat_fixtures import make_assistant, new_chat_key


def test_created_key_is_shown_once_and_stored_as_hash(engine) -> None:
    workspace, admin = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    created = engine.client(admin).post("/api/keys", json={"name": "widget", "scope": "chat",
                                                           "assistant_ids": [assistant]})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("de_chat_") and created.json()["prefix"] == key[: len(created.json()["prefix"])]
    listed = engine.client(admin).get("/api/keys").json()
    assert listed["count"] == 2 and all("key" not in k for k in listed["data"])
    with engine.db() as conn:
        stored = [r["hash"] for r in conn.execute("SELECT hash FROM api_keys")]
    assert key not in stored and all(len(h) == 64 for h in stored)


def test_revoked_key_gets_401(engine) -> None:
    _, admin = engine.workspace()
    created = engine.client(admin).post("/api/keys", json={"scope": "admin"}).json()
    assert engine.client(created["key"]).get("/api/keys").status_code == 200
    assert engine.client(admin).delete(f"/api/keys/{created['id']}").json()["revoked_at"]
    reply = engine.client(created["key"]).get("/api/keys")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"


def test_missing_key_gets_401_in_the_json_shape(engine) -> None:
    reply = engine.client().get("/api/keys")
    assert reply.status_code == 401
    assert set(reply.json()["error"]) == {"code", "message", "details"}


def test_chat_key_cannot_call_admin_routes(engine) -> None:
    _, admin = engine.workspace()
    chat_key = new_chat_key(engine, admin)["key"]
    for method, path in [("GET", "/api/keys"), ("POST", "/api/keys")]:
        reply = engine.client(chat_key).request(method, path, json={"scope": "admin"})
        assert reply.status_code == 403, path
        assert reply.json()["error"]["code"] == "admin_key_required"


def test_workspace_a_cannot_see_or_revoke_workspace_b_keys(engine) -> None:
    _, key_a = engine.workspace("A")
    _, key_b = engine.workspace("B")
    b_key_id = engine.client(key_b).get("/api/keys").json()["data"][0]["id"]
    assert b_key_id not in {k["id"] for k in engine.client(key_a).get("/api/keys").json()["data"]}
    reply = engine.client(key_a).delete(f"/api/keys/{b_key_id}")
    assert reply.status_code == 404
    assert engine.client(key_b).get("/api/keys").status_code == 200  # B's key still works


def test_chat_key_limited_to_origins(engine) -> None:
    _, admin = engine.workspace()
    chat_key = new_chat_key(engine, admin, allowed_origins=["https://shop.example"])["key"]
    other = engine.client(chat_key, origin="https://evil.example").get("/api/keys")
    assert other.status_code == 403 and other.json()["error"]["code"] == "origin_not_allowed"


def test_bad_input_gets_clear_4xx_never_500(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    malformed = client.post("/api/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    unknown = client.post("/api/keys", json={"scope": "chat", "colour": "red"})
    assert unknown.status_code == 422 and "colour" in unknown.json()["error"]["message"]
    wrong_type = client.post("/api/keys", json={"scope": "chat", "allowed_origins": "x"})
    assert wrong_type.status_code == 422 and wrong_type.json()["error"]["details"][0]["field"] == "allowed_origins"


def test_body_over_the_limit_gets_413(engine) -> None:
    _, admin = engine.workspace()
    big = b'{"name": "' + b"a" * 1_100_000 + b'"}'
    reply = engine.client(admin).post("/api/keys", content=big, headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"


def test_security_headers_on_every_response(engine) -> None:
    for reply in (engine.client().get("/api/health"), engine.client().get("/api/keys"),
                  engine.client().get("/api/nothing-here")):
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"]
