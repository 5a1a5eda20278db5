"""Who is behind a public chat key: verified user ids (HMAC), engine-issued visitor ids, trusted client IPs.

Per-user limits, conversation ownership and history follow ids the caller cannot choose; a conversation
belongs to one visitor; metadata from public keys stays small.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from tests.fakes.chat_fixtures import chat, clear_caches, last, make_assistant


def setup(engine: Any, **key_fields: Any) -> tuple[str, str, str, dict[str, Any]]:
    """(workspace, admin key, assistant, the created chat key with its identity secret)."""
    workspace, admin = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    created = engine.client(admin).post("/api/keys", json={"scope": "chat", "assistant_ids": [assistant],
                                                           **key_fields})
    assert created.status_code == 201, created.text
    return workspace, admin, assistant, created.json()


def sign(secret: str, user_id: str) -> str:
    """What the customer's backend does (README: Security)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def turn(client: Any, assistant: str, message: str = "Hello?", **body: Any) -> Any:
    return client.post("/api/chat", json={"assistant_id": assistant, "message": message, "stream": False, **body})


def limit_env(monkeypatch: pytest.MonkeyPatch, **values: int) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    clear_caches()


# ---- identity verification ----

def test_the_identity_secret_is_shown_once_and_never_listed(engine) -> None:
    _, admin, _, created = setup(engine)
    assert created["identity_secret"].startswith("de_idsec_") and created["has_identity_secret"]
    listed = engine.client(admin).get("/api/keys").text
    assert created["identity_secret"] not in listed and '"identity_secret"' not in listed


def test_a_signed_user_id_is_verified_and_owns_its_history_on_every_device(engine) -> None:
    _, admin, assistant, created = setup(engine)
    secret = created["identity_secret"]
    laptop = engine.client(created["key"])
    reply = turn(laptop, assistant, user_id="cust-42", user_hash=sign(secret, "cust-42"))
    assert reply.status_code == 200, reply.text
    conversation = reply.json()["conversation_id"]
    assert "x-visitor-token" not in reply.headers  # a verified user needs no anonymous token
    # The same user on another device (no visitor token) reads and continues it...
    phone = engine.client(created["key"], x_user_id="cust-42", x_user_hash=sign(secret, "cust-42"))
    assert phone.get(f"/api/conversations/{conversation}").status_code == 200
    again = turn(phone, assistant, "And shipping?", conversation_id=conversation, user_id="cust-42",
                 user_hash=sign(secret, "cust-42"))
    assert again.status_code == 200 and again.json()["conversation_id"] == conversation
    # ...another user, or the same id without its hash, cannot.
    other = engine.client(created["key"], x_user_id="cust-43", x_user_hash=sign(secret, "cust-43"))
    assert other.get(f"/api/conversations/{conversation}").status_code == 404
    claimed = engine.client(created["key"], x_user_id="cust-42")
    assert claimed.get(f"/api/conversations/{conversation}").status_code == 404
    stored = engine.client(admin).get(f"/api/conversations/{conversation}").json()
    assert stored["user_id"] == "cust-42"


def test_a_wrong_hash_is_refused_with_401_and_nothing_is_stored(engine) -> None:
    _, _, assistant, created = setup(engine)
    client = engine.client(created["key"])
    forged = turn(client, assistant, user_id="cust-42", user_hash=sign("guessed-secret", "cust-42"))
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_user_hash"
    swapped = turn(client, assistant, user_id="cust-43", user_hash=sign(created["identity_secret"], "cust-42"))
    assert swapped.status_code == 401 and swapped.json()["error"]["code"] == "invalid_user_hash"
    openai = client.post("/api/v1/chat/completions", json={
        "model": assistant, "messages": [{"role": "user", "content": "Hi"}], "user": "cust-42", "user_hash": "00"})
    assert openai.status_code == 401 and openai.json()["error"]["code"] == "invalid_user_hash"
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0


def test_require_identity_refuses_anonymous_visitors(engine) -> None:
    _, admin, assistant, created = setup(engine)
    changed = engine.client(admin).patch(f"/api/keys/{created['id']}", json={"require_identity": True})
    assert changed.status_code == 200 and changed.json()["require_identity"] is True
    client = engine.client(created["key"])
    anonymous = turn(client, assistant)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "identity_required"
    unsigned = turn(client, assistant, user_id="cust-42")
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "identity_required"
    signed = turn(client, assistant, user_id="cust-42", user_hash=sign(created["identity_secret"], "cust-42"))
    assert signed.status_code == 200


def test_rotating_the_secret_stops_the_old_one_at_once(engine) -> None:
    _, admin, assistant, created = setup(engine)
    rotated = engine.client(admin).post(f"/api/keys/{created['id']}/identity-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["identity_secret"]
    assert new_secret != created["identity_secret"]
    client = engine.client(created["key"])
    old = turn(client, assistant, user_id="u1", user_hash=sign(created["identity_secret"], "u1"))
    assert old.status_code == 401 and old.json()["error"]["code"] == "invalid_user_hash"
    assert turn(client, assistant, user_id="u1", user_hash=sign(new_secret, "u1")).status_code == 200
    admin_key = engine.client(admin).get("/api/keys").json()["data"][0]["id"]
    assert engine.client(admin).post(f"/api/keys/{admin_key}/identity-secret").status_code == 422


def test_a_hash_for_a_key_without_secret_gets_403(engine) -> None:
    _, _, assistant, created = setup(engine)
    with engine.db() as conn:  # a key from before identity verification (migration 0003 leaves it NULL)
        conn.execute("UPDATE api_keys SET identity_secret = NULL WHERE id = %s", (created["id"],))
    reply = turn(engine.client(created["key"]), assistant, user_id="u1", user_hash="ab" * 32)
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "identity_verification_not_enabled"


# ---- per-user limits on ids the caller cannot choose ----

def test_rotating_user_id_without_hash_does_not_bypass_the_per_user_limit(engine, monkeypatch) -> None:
    limit_env(monkeypatch, RATE_CHAT_PER_USER_PER_MINUTE=2, RATE_CHAT_PER_IP_PER_MINUTE=100)
    _, _, assistant, created = setup(engine)
    client = engine.client(created["key"])  # keeps its visitor token, like the widget
    for n in range(2):
        assert turn(client, assistant, user_id=f"rotating-{n}").status_code == 200
    refused = turn(client, assistant, user_id="rotating-99")
    assert refused.status_code == 429 and refused.json()["error"]["details"]["scope"] == "user"


def test_new_visitor_ids_do_not_bypass_the_per_ip_limit(engine, monkeypatch) -> None:
    limit_env(monkeypatch, RATE_CHAT_PER_USER_PER_MINUTE=100, RATE_CHAT_PER_IP_PER_MINUTE=2)
    _, _, assistant, created = setup(engine)
    # Each request a fresh client (no visitor token), each with a made-up X-Real-IP: not on Vercel, ignored.
    for n in range(2):
        assert turn(engine.client(created["key"], x_real_ip=f"198.51.100.{n}"), assistant).status_code == 200
    refused = turn(engine.client(created["key"], x_real_ip="198.51.100.77"), assistant)
    assert refused.status_code == 429 and refused.json()["error"]["details"]["scope"] == "ip"


def test_forwarded_ip_counts_only_on_vercel(engine, monkeypatch) -> None:
    limit_env(monkeypatch, RATE_CHAT_PER_USER_PER_MINUTE=100, RATE_CHAT_PER_IP_PER_MINUTE=1, VERCEL=1)
    _, _, assistant, created = setup(engine)
    # Behind Vercel's proxy every request comes from the proxy: the platform's header names the client.
    first = engine.client(created["key"], x_vercel_forwarded_for="203.0.113.1")
    assert turn(first, assistant).status_code == 200
    assert turn(engine.client(created["key"], x_vercel_forwarded_for="203.0.113.2"), assistant).status_code == 200
    repeat = turn(engine.client(created["key"], x_vercel_forwarded_for="203.0.113.1"), assistant)
    assert repeat.status_code == 429 and repeat.json()["error"]["details"]["scope"] == "ip"


def test_verified_users_are_limited_per_user_not_per_ip(engine, monkeypatch) -> None:
    limit_env(monkeypatch, RATE_CHAT_PER_USER_PER_MINUTE=1, RATE_CHAT_PER_IP_PER_MINUTE=1)
    _, _, assistant, created = setup(engine)
    secret = created["identity_secret"]
    client = engine.client(created["key"])  # one office, one IP, two signed-in customers
    assert turn(client, assistant, user_id="a", user_hash=sign(secret, "a")).status_code == 200
    assert turn(client, assistant, user_id="b", user_hash=sign(secret, "b")).status_code == 200
    refused = turn(client, assistant, user_id="a", user_hash=sign(secret, "a"))
    assert refused.status_code == 429 and refused.json()["error"]["details"]["scope"] == "user"


# ---- conversations belong to one visitor ----

def test_visitor_b_cannot_read_or_continue_visitor_as_conversation(engine) -> None:
    _, admin, assistant, created = setup(engine)
    visitor_a = engine.client(created["key"])
    events = chat(visitor_a, assistant_id=assistant, message="My order 1234 is late")
    started = last(events, "conversation")
    conversation, reply_id = started["conversation_id"], last(events, "done")["message_id"]
    assert started["visitor_token"] == visitor_a.headers["x-visitor-token"]
    visitor_b = engine.client(created["key"])
    for path in (f"/api/conversations/{conversation}", f"/api/conversations/{conversation}/messages",
                 f"/api/conversations/{conversation}/export"):
        assert visitor_b.get(path).status_code == 404, path
    cont = visitor_b.post("/api/chat", json={"assistant_id": assistant, "conversation_id": conversation,
                                             "message": "What did I order?"})
    assert cont.status_code == 404 and cont.json()["error"]["code"] == "conversation_not_found"
    ui = visitor_b.post("/api/chat", json={"assistant_id": assistant, "id": conversation, "messages": [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "What did I order?"}]}]})
    assert ui.status_code == 404
    openai = visitor_b.post("/api/v1/chat/completions", json={"model": assistant, "conversation_id": conversation,
                                                              "messages": [{"role": "user", "content": "Order?"}]})
    assert openai.status_code == 404
    assert visitor_b.post("/api/feedback", json={"message_id": reply_id, "rating": "down"}).status_code == 404
    forged = engine.client(created["key"], x_visitor_token="vt1.someone." + "A" * 43)
    assert forged.get(f"/api/conversations/{conversation}").status_code == 404
    # Visitor A, with the token the engine issued, still has it all.
    assert visitor_a.get(f"/api/conversations/{conversation}").status_code == 200
    assert visitor_a.post("/api/feedback", json={"message_id": reply_id, "rating": "up"}).status_code == 201
    more = chat(visitor_a, assistant_id=assistant, conversation_id=conversation, message="Any news?")
    assert last(more, "conversation")["conversation_id"] == conversation
    with engine.db() as conn:
        stored = conn.execute("SELECT role, content FROM messages WHERE conversation_id = %s ORDER BY seq",
                              (conversation,)).fetchall()
    assert [m["content"] for m in stored if m["role"] == "user"] == ["My order 1234 is late", "Any news?"]
    assert engine.client(admin).get(f"/api/conversations/{conversation}").status_code == 200


# ---- metadata bounds ----

def test_metadata_from_public_keys_is_bounded(engine) -> None:
    _, admin, assistant, created = setup(engine)
    client = engine.client(created["key"])
    many = turn(client, assistant, metadata={f"k{n}": n for n in range(21)})
    assert many.status_code == 422 and many.json()["error"]["code"] == "metadata_invalid"
    long_key = turn(client, assistant, metadata={"k" * 65: 1})
    assert long_key.status_code == 422
    big = turn(client, assistant, metadata={"note": "x" * 5000})
    assert big.status_code == 413 and big.json()["error"]["code"] == "metadata_too_large"
    first = turn(client, assistant, metadata={f"a{n}": n for n in range(15)})
    assert first.status_code == 200
    conversation = first.json()["conversation_id"]
    # Turn after turn, new keys must not pile up past the bound.
    piled = turn(client, assistant, conversation_id=conversation, metadata={f"b{n}": n for n in range(10)})
    assert piled.status_code == 422 and piled.json()["error"]["code"] == "metadata_invalid"
    stored = engine.client(admin).get(f"/api/conversations/{conversation}").json()
    assert len(stored["metadata"]) == 15 and stored["message_count"] == 2
    fits = turn(client, assistant, conversation_id=conversation, metadata={"a1": "changed", "b1": 1})
    assert fits.status_code == 200


def test_identity_secrets_never_reach_the_logs() -> None:
    from shared.core.observability import scrub

    assert "abcdefghij" not in scrub("rotated to de_idsec_abcdefghij1234")


def test_odd_identity_headers_get_clear_answers_never_500(engine) -> None:
    _, _, assistant, created = setup(engine)
    secret = created["identity_secret"]
    client = engine.client(created["key"])
    odd_hash = client.get("/api/conversations/conv_x", headers={"x-user-id": "u1", "x-user-hash": "ä".encode()})
    assert odd_hash.status_code == 401 and odd_hash.json()["error"]["code"] == "invalid_user_hash"
    odd_token = client.get("/api/conversations/conv_x", headers={"x-visitor-token": "vt1.a.ä".encode()})
    assert odd_token.status_code == 404
    long_id = "u" * 201
    too_long = client.get("/api/conversations/conv_x", headers={"x-user-id": long_id,
                                                                "x-user-hash": sign(secret, long_id)})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "user_id_too_long"
    no_id = turn(client, assistant, user_hash=sign(secret, "u1"))
    assert no_id.status_code == 401 and no_id.json()["error"]["code"] == "user_id_required"
