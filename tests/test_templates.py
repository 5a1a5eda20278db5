"""Templates: the built-in default, versions on every change, field-naming validation, tenancy."""

from __future__ import annotations

from tests.fakes.chat_fixtures import new_chat_key


def create_template(client, **fields):
    reply = client.post("/api/templates", json={"name": "Support", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_list_shows_the_builtin_default_and_the_workspace_templates(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    created = create_template(client, system_prompt="Be brief.", model="gpt-4o")
    listed = client.get("/api/templates").json()
    assert [t["id"] for t in listed["data"]] == ["default", created["id"]]
    default, mine = listed["data"]
    assert default["builtin"] and not mine["builtin"]
    assert mine["config"]["system_prompt"] == "Be brief." and mine["config"]["temperature"] == 0.2
    assert created["version"] == 1


def test_every_update_makes_a_new_version_and_old_ones_stay_readable(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    template = create_template(client, greeting="Hi", retrieval={"top_k": 8, "mode": "keyword"})
    url = f"/api/templates/{template['id']}"

    patched = client.patch(url, json={"greeting": "Hello", "retrieval": {"top_k": 3}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    # Nested settings merge: mode survives a patch of top_k alone.
    assert patched.json()["config"]["retrieval"] == {"top_k": 3, "min_score": 0.0, "mode": "keyword"}

    replaced = client.put(url, json={"name": "Renamed", "model": "gpt-4.1"}).json()
    assert replaced["version"] == 3 and replaced["name"] == "Renamed"
    assert replaced["config"]["greeting"] == "" and replaced["config"]["model"] == "gpt-4.1"

    assert client.get(url).json()["version"] == 3
    versions = client.get(f"{url}/versions").json()
    assert [v["version"] for v in versions["data"]] == [3, 2, 1]
    assert [v["latest"] for v in versions["data"]] == [True, False, False]
    first = client.get(f"{url}/versions/1").json()
    assert first["config"]["greeting"] == "Hi" and first["config"]["retrieval"]["top_k"] == 8
    assert client.get(f"{url}/versions/4").json()["error"]["code"] == "template_version_not_found"
    with engine.db() as conn:
        assert conn.execute("SELECT latest_version FROM templates WHERE id = %s",
                            (template["id"],)).fetchone()["latest_version"] == 3


def test_the_builtin_default_cannot_be_changed_or_deleted(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    for method, body in [("PATCH", {"greeting": "x"}), ("PUT", {"name": "mine"}), ("DELETE", None)]:
        reply = client.request(method, "/api/templates/default", json=body)
        assert reply.status_code == 403, method
        assert reply.json()["error"]["code"] == "builtin_template_read_only"
    assert client.get("/api/templates/default").json()["version"] == 1
    assert client.get("/api/templates/default/versions/1").status_code == 200


def test_validation_errors_name_the_field(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    reply = client.post("/api/templates", json={"name": "x", "temperature": 5})
    assert reply.status_code == 422
    assert "temperature" in reply.json()["error"]["message"]
    assert reply.json()["error"]["details"][0]["field"] == "temperature"

    typo = client.post("/api/templates", json={"name": "x", "temprature": 0.5})
    assert typo.status_code == 422 and "temprature" in typo.json()["error"]["message"]

    template = create_template(client)
    for patch, field in [({"retrieval": {"top_k": 0}}, "retrieval.top_k"), ({"provider": "gemini"}, "provider"),
                         ({"suggested_questions": ["ok", ""]}, "suggested_questions.1"), ({"colour": "red"}, "colour")]:
        reply = client.patch(f"/api/templates/{template['id']}", json=patch)
        assert reply.status_code == 422, patch
        assert reply.json()["error"]["details"][0]["field"] == field
        assert field in reply.json()["error"]["message"]
    # A refused change makes no version.
    assert client.get(f"/api/templates/{template['id']}").json()["version"] == 1


def test_a_template_in_use_cannot_be_deleted(engine) -> None:
    _, admin = engine.workspace()
    client = engine.client(admin)
    template = create_template(client)
    assistant = client.post("/api/assistants", json={"name": "Bot", "template_id": template["id"]}).json()
    reply = client.delete(f"/api/templates/{template['id']}")
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "template_in_use"
    assert reply.json()["error"]["details"]["assistant_ids"] == [assistant["id"]]

    assert client.delete(f"/api/assistants/{assistant['id']}").status_code == 204
    assert client.delete(f"/api/templates/{template['id']}").status_code == 204
    assert client.get(f"/api/templates/{template['id']}").status_code == 404
    assert client.get(f"/api/templates/{template['id']}/versions").status_code == 404


def test_another_workspace_template_is_not_found_on_every_route(engine) -> None:
    _, admin_a = engine.workspace("A")
    _, admin_b = engine.workspace("B")
    template = create_template(engine.client(admin_a), greeting="secret")
    other = engine.client(admin_b)
    url = f"/api/templates/{template['id']}"
    for method, path, body in [("GET", url, None), ("PATCH", url, {"greeting": "x"}), ("PUT", url, {"name": "x"}),
                               ("DELETE", url, None), ("GET", f"{url}/versions", None),
                               ("GET", f"{url}/versions/1", None)]:
        reply = other.request(method, path, json=body)
        assert reply.status_code == 404, (method, path)
        assert reply.json()["error"]["code"] == "template_not_found"
    assert [t["id"] for t in other.get("/api/templates").json()["data"]] == ["default"]
    assert other.post("/api/assistants", json={"name": "x", "template_id": template["id"]}).status_code == 404
    assert engine.client(admin_a).get(url).json()["version"] == 1


def test_templates_need_an_admin_key_and_changes_are_audited(engine) -> None:
    workspace_id, admin = engine.workspace()
    client = engine.client(admin)
    chat_key = new_chat_key(engine, admin)["key"]
    assert engine.client(chat_key).get("/api/templates").status_code == 403
    assert engine.client(chat_key).post("/api/templates", json={"name": "x"}).status_code == 403
    template = create_template(client)
    client.patch(f"/api/templates/{template['id']}", json={"greeting": "Hi"})
    client.delete(f"/api/templates/{template['id']}")
    with engine.db() as conn:
        actions = [r["action"] for r in conn.execute(
            "SELECT action FROM audit_log WHERE workspace_id = %s AND target = %s ORDER BY id",
            (workspace_id, template["id"]))]
    assert actions == ["template.created", "template.updated", "template.deleted"]
