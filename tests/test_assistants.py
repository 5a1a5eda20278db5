"""Assistants: effective config from template + overrides, version pinning, the Redis cache, tenancy."""

from __future__ import annotations

import json
import os

from shared.core.kv import get_kv
from shared.core.settings import get_settings
from shared.workspace.assistants import cache_key, get_assistant, load_assistant, to_json
from tests.fakes.chat_fixtures import new_chat_key


def make_assistant(client, **fields):
    reply = client.post("/api/assistants", json={"name": "Helper", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()


def make_template(client, **fields):
    reply = client.post("/api/templates", json={"name": "Support", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_an_assistant_on_the_default_template_shows_its_effective_config(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    assistant = make_assistant(client, overrides={"greeting": "Welcome!", "retrieval": {"top_k": 9}},
                               allowed_origins=["https://Shop.example.com/"])
    assert assistant["template_id"] == "default" and assistant["template_version"] is None
    assert assistant["effective_template_version"] == 1
    assert assistant["greeting"] == "Welcome!" and assistant["config"]["greeting"] == "Welcome!"
    assert assistant["config"]["retrieval"] == {"top_k": 9, "min_score": 0.0, "mode": "hybrid"}
    assert assistant["allowed_origins"] == ["https://shop.example.com"]
    read = client.get(f"/api/assistants/{assistant['id']}").json()
    assert read == assistant


def test_overrides_and_references_are_validated_with_the_field_named(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    for body, field in [({"overrides": {"temperature": 3}}, "overrides.temperature"),
                        ({"overrides": {"retrieval": {"mode": "magic"}}}, "overrides.retrieval.mode"),
                        ({"overrides": {"colour": "red"}}, "overrides.colour"),
                        ({"template_version": 7}, "template_version"),
                        ({"allowed_origins": ["not a url"]}, "allowed_origins.0")]:
        reply = client.post("/api/assistants", json={"name": "x", **body})
        assert reply.status_code == 422, body
        assert reply.json()["error"]["details"][0]["field"] == field
        assert field in reply.json()["error"]["message"]
    missing = client.post("/api/assistants", json={"name": "x", "template_id": "tpl_nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "template_not_found"
    assistant = make_assistant(client)
    reply = client.patch(f"/api/assistants/{assistant['id']}", json={"overrides": {"max_output_tokens": 0}})
    assert reply.status_code == 422 and "overrides.max_output_tokens" in reply.json()["error"]["message"]
    assert client.patch(f"/api/assistants/{assistant['id']}", json={"name": None}).status_code == 422


def test_template_update_reaches_followers_at_once_even_with_a_warm_cache(engine) -> None:
    workspace_id, admin = engine.workspace()
    client = engine.client(admin)
    template = make_template(client, greeting="Hello v1", suggested_questions=["What is it?"])
    follower = make_assistant(client, template_id=template["id"])
    pinned = make_assistant(client, template_id=template["id"], template_version=1)
    for assistant in (follower, pinned):  # warm the cache
        assert client.get(f"/api/assistants/{assistant['id']}/public").json()["greeting"] == "Hello v1"
    assert engine.stack.local.redis.get(cache_key(workspace_id, follower["id"])) is not None

    client.patch(f"/api/templates/{template['id']}", json={"greeting": "Hello v2", "suggested_questions": []})
    widget = client.get(f"/api/assistants/{follower['id']}/public").json()
    assert widget["greeting"] == "Hello v2" and widget["suggested_questions"] == []
    assert client.get(f"/api/assistants/{follower['id']}").json()["effective_template_version"] == 2
    assert client.get(f"/api/assistants/{pinned['id']}/public").json()["greeting"] == "Hello v1"

    # Moving the pin is an assistant update: it too reaches readers at once.
    client.patch(f"/api/assistants/{pinned['id']}", json={"template_version": None})
    assert client.get(f"/api/assistants/{pinned['id']}/public").json()["greeting"] == "Hello v2"


def test_assistant_update_and_delete_reach_readers_with_a_warm_cache(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    assistant = make_assistant(client, overrides={"greeting": "Hi"})
    url = f"/api/assistants/{assistant['id']}"
    assert client.get(f"{url}/public").json()["greeting"] == "Hi"
    updated = client.patch(url, json={"name": "Renamed", "overrides": {"greeting": "Howdy", "language": "de"}})
    assert updated.status_code == 200, updated.text
    widget = client.get(f"{url}/public").json()
    assert widget == {"id": assistant["id"], "name": "Renamed", "greeting": "Howdy", "suggested_questions": [],
                      "language": "de"}
    assert client.delete(url).status_code == 204
    assert client.get(f"{url}/public").status_code == 404
    assert client.get(url).status_code == 404


def test_a_cold_or_stale_cache_never_changes_the_answer(engine) -> None:
    workspace_id, admin = engine.workspace()
    client = engine.client(admin)
    template = make_template(client, greeting="v1")
    assistant = make_assistant(client, template_id=template["id"], overrides={"temperature": 0.7},
                               limits={"chat_per_key_per_minute": 30})
    redis = engine.stack.local.redis
    key = cache_key(workspace_id, assistant["id"])
    with engine.db() as conn:
        truth = load_assistant(conn, workspace_id, assistant["id"])
        assert get_assistant(conn, workspace_id, assistant["id"]) == truth  # cold: filled from Postgres
        assert json.loads(redis.get(key))["config"]["temperature"] == 0.7
        assert get_assistant(conn, workspace_id, assistant["id"]) == truth  # warm: from Redis
        redis.set(key, "{not json")
        assert get_assistant(conn, workspace_id, assistant["id"]) == truth

        # A reader that loaded the old row before the change can't write it back over the tombstone.
        redis.delete(key)
        old = load_assistant(conn, workspace_id, assistant["id"])
        client.patch(f"/api/templates/{template['id']}", json={"greeting": "v2"})
        get_kv().pipeline([["SET", key, to_json(old), "EX", 300, "NX"]])
        assert get_assistant(conn, workspace_id, assistant["id"]).config.greeting == "v2"


def test_list_is_paginated_and_capped(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    ids = [make_assistant(client, name=f"A{n}")["id"] for n in range(3)]
    first = client.get("/api/assistants", params={"limit": 2}).json()
    assert [a["id"] for a in first["data"]] == ids[::-1][:2] and first["count"] == 2
    second = client.get("/api/assistants", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [a["id"] for a in second["data"]] == [ids[0]] and second["next_cursor"] is None
    too_many = client.get("/api/assistants", params={"limit": 101})
    assert too_many.status_code == 422 and "limit" in too_many.json()["error"]["message"]
    bad = client.get("/api/assistants", params={"cursor": "garbage"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "cursor"


def test_another_workspace_assistant_is_not_found_on_every_route(engine) -> None:
    _, admin_a = engine.workspace("A")
    _, admin_b = engine.workspace("B")
    assistant = make_assistant(engine.client(admin_a))
    engine.client(admin_a).get(f"/api/assistants/{assistant['id']}/public")  # warm A's cache entry
    other = engine.client(admin_b)
    url = f"/api/assistants/{assistant['id']}"
    for method, path, body in [("GET", url, None), ("GET", f"{url}/public", None), ("PATCH", url, {"name": "x"}),
                               ("PUT", url, {"name": "x"}), ("DELETE", url, None)]:
        reply = other.request(method, path, json=body)
        assert reply.status_code == 404, (method, path)
    assert other.get("/api/assistants").json()["data"] == []
    assert engine.client(admin_a).get(url).json()["name"] == "Helper"


def test_chat_keys_read_only_the_public_view(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    assistant = make_assistant(client, overrides={"greeting": "Hi", "suggested_questions": ["Prices?"]},
                               allowed_origins=["https://shop.example.com"])
    chat_key = new_chat_key(engine, admin, assistant["id"])["key"]
    chat = engine.client(chat_key)
    widget = chat.get(f"/api/assistants/{assistant['id']}/public")
    assert widget.status_code == 200
    assert widget.json() == {"id": assistant["id"], "name": "Helper", "greeting": "Hi",
                             "suggested_questions": ["Prices?"], "language": "auto"}
    from_shop = engine.client(chat_key, origin="https://shop.example.com")
    assert from_shop.get(f"/api/assistants/{assistant['id']}/public").status_code == 200
    elsewhere = engine.client(chat_key, origin="https://evil.example.net").get(f"/api/assistants/{assistant['id']}/public")
    assert elsewhere.status_code == 403 and elsewhere.json()["error"]["code"] == "origin_not_allowed"
    for method, path in [("GET", "/api/assistants"), ("GET", f"/api/assistants/{assistant['id']}"),
                         ("POST", "/api/assistants"), ("DELETE", f"/api/assistants/{assistant['id']}")]:
        assert chat.request(method, path, json={"name": "x"}).status_code == 403, (method, path)


def test_put_replaces_every_field(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    template = make_template(client)
    assistant = make_assistant(client, template_id=template["id"], template_version=1,
                               overrides={"greeting": "Hi"}, limits={"chat_per_key_per_minute": 5})
    replaced = client.put(f"/api/assistants/{assistant['id']}", json={"name": "Fresh"}).json()
    assert replaced["template_id"] == "default" and replaced["template_version"] is None
    assert replaced["overrides"] == {} and replaced["limits"] == {} and replaced["greeting"] == ""


def test_a_redis_outage_keeps_answers_right_and_refuses_changes_it_could_not_invalidate(engine, monkeypatch) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    template = make_template(client, greeting="Hi")
    assistant = make_assistant(client, template_id=template["id"])
    assert client.get(f"/api/assistants/{assistant['id']}/public").json()["greeting"] == "Hi"  # cached now

    redis_url = os.environ["UPSTASH_REDIS_REST_URL"]
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    get_kv.cache_clear()
    assert client.get(f"/api/assistants/{assistant['id']}/public").json()["greeting"] == "Hi"  # from Postgres
    refused = client.patch(f"/api/templates/{template['id']}", json={"greeting": "Bye"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "redis_unavailable"
    assert client.delete(f"/api/assistants/{assistant['id']}").status_code == 503

    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", redis_url)
    get_settings.cache_clear()
    get_kv.cache_clear()
    # Nothing changed behind the cache's back: the template is still at version 1 and the assistant exists.
    assert client.get(f"/api/templates/{template['id']}").json()["version"] == 1
    assert client.get(f"/api/assistants/{assistant['id']}/public").json()["greeting"] == "Hi"
