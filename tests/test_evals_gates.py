"""Gated templates: new versions are drafts until a run of the gate's set passes; a failing version is refused
with its failing metrics (409), an admin override is recorded in the audit log; two runs compare case by case."""

from __future__ import annotations

from typing import Any

from tests.eval_fixtures import RETURNS, load_knowledge, make_set, ok, run_set

CASES = [
    {"question": "How long until refunds are paid?", "expected_sources": [{"url": RETURNS}]},
    {"question": "Who won the football world cup in 1974?", "expect_abstain": True},
]


def gated_assistant(engine: Any) -> tuple[Any, str, str, str]:
    """A workspace template with an assistant on it (offline answerer, keyword retrieval) and a gate."""
    workspace, key = engine.workspace()
    client = engine.client(key)
    template = ok(client.post("/api/templates", json={"name": "Support", "retrieval": {"mode": "keyword"}}), 201)
    assistant = ok(client.post("/api/assistants", json={"name": "Helper", "template_id": template["id"]}), 201)
    with engine.db() as conn:
        load_knowledge(conn, workspace, assistant["id"])
    set_id = make_set(client, assistant["id"], CASES)
    gated = ok(client.put(f"/api/templates/{template['id']}/gate", json={"set_id": set_id}))
    assert gated["published_version"] == 1 and gated["gate"] == {"set_id": set_id, "tolerances": {}}
    return client, template["id"], assistant["id"], set_id


def test_a_failing_version_is_refused_and_an_override_is_audited(engine: Any) -> None:
    client, template_id, assistant_id, set_id = gated_assistant(engine)
    # Version 2 abstains on everything short of a perfect match: the refunds question now goes unanswered.
    draft = ok(client.patch(f"/api/templates/{template_id}", json={"abstain_threshold": 1.0}))
    assert (draft["version"], draft["published_version"]) == (2, 1)
    # Assistants stay on the published version while 2 is a draft.
    assert ok(client.get(f"/api/assistants/{assistant_id}"))["effective_template_version"] == 1
    versions = ok(client.get(f"/api/templates/{template_id}/versions"))["data"]
    assert [(v["version"], v["latest"], v["published"]) for v in versions] == [(2, True, False), (1, False, True)]

    publish = f"/api/templates/{template_id}/versions/2/publish"
    unrun = client.post(publish)
    assert unrun.status_code == 409 and unrun.json()["error"]["code"] == "eval_run_required"

    baseline, candidate = run_set(engine, client, set_id, version=1), run_set(engine, client, set_id, version=2)
    assert (baseline["template_version"], candidate["template_version"]) == (1, 2)
    assert baseline["metrics"]["abstain_precision"] == 1.0 and candidate["metrics"]["abstain_precision"] == 0.5
    refused = client.post(publish, json={})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "eval_gate_failed" and "abstain_precision" in error["message"]
    assert error["details"]["failing"] == [{"metric": "abstain_precision", "published": 1.0, "candidate": 0.5,
                                            "worse_by": 0.5, "tolerance": 0.02}]
    assert (error["details"]["candidate_run_id"], error["details"]["baseline_run_id"]) == (candidate["id"],
                                                                                          baseline["id"])
    assert ok(client.get(f"/api/assistants/{assistant_id}"))["effective_template_version"] == 1
    assert ok(client.get("/api/audit", params={"action": "template.published"}))["count"] == 0

    forced = ok(client.post(publish, json={"override": True, "reason": "legal asked for stricter answers"}))
    assert forced["published_version"] == 2 and forced["verdict"]["overridden"] is True
    assert ok(client.get(f"/api/assistants/{assistant_id}"))["effective_template_version"] == 2
    entry = ok(client.get("/api/audit", params={"action": "template.published"}))["data"][0]
    assert entry["target"] == template_id and entry["details"]["override"] is True
    assert entry["details"]["reason"] == "legal asked for stricter answers" and entry["details"]["previous"] == 1
    assert [f["metric"] for f in entry["details"]["failing"]] == ["abstain_precision"]

    # The comparison names the case that broke first.
    diff = ok(client.get(f"/api/evals/runs/{baseline['id']}/compare/{candidate['id']}"))
    assert diff["metrics"]["abstain_precision"] == {"a": 1.0, "b": 0.5, "delta": -0.5, "better": False}
    assert diff["metrics"]["hit@1"]["delta"] == 0.0
    assert [(c["question"], c["change"]) for c in diff["cases"]] == [(CASES[0]["question"], "newly_failing")]
    assert diff["cases"][0]["a"]["passed"] and diff["cases"][0]["b"]["abstained"]


def test_a_version_that_passes_is_published_without_override(engine: Any) -> None:
    client, template_id, assistant_id, set_id = gated_assistant(engine)
    ok(client.patch(f"/api/templates/{template_id}", json={"greeting": "Hello!"}))
    run_set(engine, client, set_id, version=1)
    run_set(engine, client, set_id, version=2)
    published = ok(client.post(f"/api/templates/{template_id}/versions/2/publish"))
    assert published["verdict"]["passed"] and published["verdict"]["failing"] == []
    assistant = ok(client.get(f"/api/assistants/{assistant_id}"))
    assert assistant["effective_template_version"] == 2 and assistant["greeting"] == "Hello!"
    entry = ok(client.get("/api/audit", params={"action": "template.published"}))["data"][0]
    assert entry["details"]["override"] is False
    # The set can't go while the template is gated on it; without the gate assistants follow the latest again.
    assert client.delete(f"/api/evals/sets/{set_id}").json()["error"]["code"] == "eval_set_in_use"
    ok(client.patch(f"/api/templates/{template_id}", json={"greeting": "Hi there"}))
    assert ok(client.get(f"/api/assistants/{assistant_id}"))["greeting"] == "Hello!"
    assert client.delete(f"/api/templates/{template_id}/gate").status_code == 204
    assert ok(client.get(f"/api/templates/{template_id}"))["published_version"] is None
    assert ok(client.get(f"/api/assistants/{assistant_id}"))["greeting"] == "Hi there"


def test_gates_are_refused_where_they_cannot_work(engine: Any) -> None:
    client, template_id, assistant_id, set_id = gated_assistant(engine)
    other = ok(client.post("/api/templates", json={"name": "Other"}), 201)
    wrong = client.put(f"/api/templates/{other['id']}/gate", json={"set_id": set_id})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "eval_set_not_on_template"
    assert client.put("/api/templates/default/gate", json={"set_id": set_id}).status_code == 403
    unknown = client.put(f"/api/templates/{template_id}/gate", json={"set_id": set_id, "tolerances": {"hit@7": 0.1}})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_metric"
    ungated = client.post(f"/api/templates/{other['id']}/versions/1/publish")
    assert ungated.status_code == 409 and ungated.json()["error"]["code"] == "template_not_gated"
    assert client.post(f"/api/templates/{template_id}/versions/9/publish").status_code == 404
