"""Evaluation sets: CRUD per workspace and assistant, JSONL import and export, drafted cases from the knowledge."""

from __future__ import annotations

import json
from typing import Any

from tests.eval_fixtures import BILLING, RETURNS, SUPPORT, load_knowledge, make_set, ok
from tests.fakes.chat_fixtures import make_assistant


def setup(engine: Any) -> tuple[Any, str]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace)
        load_knowledge(conn, workspace, assistant_id)
    return engine.client(key), assistant_id


def test_sets_and_cases_can_be_created_read_changed_and_deleted(engine: Any) -> None:
    client, assistant_id = setup(engine)
    set_id = make_set(client, assistant_id, [{"question": "Refunds?", "expected_sources": [{"url": RETURNS}],
                                              "key_facts": ["14 days"], "tags": ["topic:returns"]}])
    listed = ok(client.get("/api/evals/sets", params={"assistant_id": assistant_id}))
    assert [(s["id"], s["active_cases"], s["draft_cases"]) for s in listed["data"]] == [(set_id, 1, 0)]
    case = ok(client.post(f"/api/evals/sets/{set_id}/cases", json={"question": "Weather?", "expect_abstain": True}),
              201)
    assert case["origin"] == "manual" and case["status"] == "active"
    changed = ok(client.patch(f"/api/evals/sets/{set_id}/cases/{case['id']}", json={"tags": ["off-topic"]}))
    assert changed["tags"] == ["off-topic"] and changed["expect_abstain"] is True
    renamed = ok(client.patch(f"/api/evals/sets/{set_id}", json={"name": "Renamed", "run_on_resync": True}))
    assert renamed["name"] == "Renamed" and renamed["run_on_resync"] is True
    assert client.delete(f"/api/evals/sets/{set_id}/cases/{case['id']}").status_code == 204
    assert ok(client.get(f"/api/evals/sets/{set_id}/cases"))["count"] == 1
    assert client.delete(f"/api/evals/sets/{set_id}").status_code == 204
    assert client.get(f"/api/evals/sets/{set_id}").json()["error"]["code"] == "eval_set_not_found"
    actions = [e["action"] for e in ok(client.get("/api/audit", params={"action": "eval_set.*"}))["data"]]
    assert actions == ["eval_set.deleted", "eval_set.updated", "eval_set.created"]


def test_bad_cases_are_refused_naming_the_field(engine: Any) -> None:
    client, assistant_id = setup(engine)
    both = client.post("/api/evals/sets", json={"assistant_id": assistant_id, "name": "x", "cases": [
        {"question": "Q", "expected_sources": [{"url": RETURNS, "chunk_id": "c1"}]}]})
    assert both.status_code == 422 and "exactly one of url, document_id, chunk_id" in both.text
    contradiction = client.post("/api/evals/sets", json={"assistant_id": assistant_id, "name": "x", "cases": [
        {"question": "Q", "expect_abstain": True, "key_facts": ["a"]}]})
    assert contradiction.status_code == 422
    missing = client.post("/api/evals/sets", json={"assistant_id": "asst_nope", "name": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "assistant_not_found"
    set_id = make_set(client, assistant_id, [])
    empty = client.post("/api/evals/runs", json={"set_id": set_id})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "no_active_cases"
    version = client.post("/api/evals/runs", json={"set_id": make_set(client, assistant_id, [{"question": "Q"}]),
                                                   "template_version": 7})
    assert version.status_code == 422 and version.json()["error"]["code"] == "template_version_not_found"


def test_jsonl_export_imports_back_and_a_bad_line_is_named(engine: Any) -> None:
    client, assistant_id = setup(engine)
    source = make_set(client, assistant_id, [
        {"question": "Refunds?", "expected_sources": [{"url": RETURNS}], "key_facts": ["14 days"], "tags": ["en"]},
        {"question": "Weather in Paris?", "expect_abstain": True}])
    exported = client.get(f"/api/evals/sets/{source}/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [line["question"] for line in lines] == ["Refunds?", "Weather in Paris?"]

    target = make_set(client, assistant_id, [], name="Copy")
    imported = client.post(f"/api/evals/sets/{target}/import", content=exported.content,
                           headers={"content-type": "application/x-ndjson"})
    assert ok(imported) == {"imported": 2}
    copied = ok(client.get(f"/api/evals/sets/{target}/cases"))["data"]
    assert [(c["question"], c["expected_sources"], c["key_facts"], c["expect_abstain"], c["origin"])
            for c in copied] == [("Refunds?", [{"url": RETURNS}], ["14 days"], False, "import"),
                                 ("Weather in Paris?", [], [], True, "import")]

    bad = b'{"question": "Fine"}\n\n{"question": "", "expect_abstain": true}\n'
    refused = client.post(f"/api/evals/sets/{target}/import", content=bad)
    assert refused.status_code == 422 and "line 3" in refused.json()["error"]["message"]
    assert refused.json()["error"]["details"][0]["line"] == 3
    not_json = client.post(f"/api/evals/sets/{target}/import", content=b"question: no\n")
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_jsonl"
    assert ok(client.get(f"/api/evals/sets/{target}"))["active_cases"] == 2  # nothing half-imported
    replaced = client.post(f"/api/evals/sets/{target}/import", params={"replace": "true"},
                           content=b'{"question": "Only this"}\n')
    assert ok(replaced) == {"imported": 1}
    assert [c["question"] for c in ok(client.get(f"/api/evals/sets/{target}/cases"))["data"]] == ["Only this"]


def test_drafts_come_from_headings_and_wait_for_acceptance(engine: Any) -> None:
    client, assistant_id = setup(engine)
    set_id = make_set(client, assistant_id, [])
    drafted = ok(client.post(f"/api/evals/sets/{set_id}/draft", json={"count": 10, "offtopic": 2}), 201)["data"]
    on_topic = [c for c in drafted if not c["expect_abstain"]]
    # One per page, its first section's heading as the question and the page as the expected source.
    assert [(c["question"], c["expected_sources"]) for c in on_topic] == [
        ("What should I know about invoices?", [{"url": BILLING}]),
        ("What should I know about refunds?", [{"url": RETURNS}]),
        ("What should I know about opening hours?", [{"url": SUPPORT}])]
    off_topic = [c for c in drafted if c["expect_abstain"]]
    assert len(off_topic) == 2 and all("off-topic" in c["tags"] for c in off_topic)
    assert all(c["status"] == "draft" and c["origin"] == "drafted" for c in drafted)
    # Drafts are not run until accepted; drafting again proposes nothing twice.
    assert client.post("/api/evals/runs", json={"set_id": set_id}).json()["error"]["code"] == "no_active_cases"
    again = ok(client.post(f"/api/evals/sets/{set_id}/draft", json={"count": 10, "offtopic": 1}), 201)["data"]
    assert [c["expect_abstain"] for c in again] == [True]  # every page is covered; one new off-topic question
    assert again[0]["question"] not in {c["question"] for c in off_topic}
    assert client.delete(f"/api/evals/sets/{set_id}/cases/{again[0]['id']}").status_code == 204
    assert ok(client.post(f"/api/evals/sets/{set_id}/accept", json={"case_ids": [on_topic[0]["id"]]})) == {
        "accepted": 1}
    assert ok(client.post(f"/api/evals/sets/{set_id}/accept")) == {"accepted": 4}
    assert ok(client.get(f"/api/evals/sets/{set_id}"))["active_cases"] == 5
    run = ok(client.post("/api/evals/runs", json={"set_id": set_id}), 202)
    engine.wait_for_queue(timeout=60)
    finished = ok(client.get(f"/api/evals/runs/{run['id']}"))
    # Offline answerer, keyword retrieval: each drafted heading finds its own page; off-topic questions abstain.
    assert finished["metrics"]["hit@1"] == 1.0 and finished["metrics"]["abstain_recall"] == 1.0


def test_with_a_model_configured_the_model_writes_the_drafted_questions(engine: Any, openai_api: Any) -> None:
    openai_api.reply = lambda body: f"Question about: {body['messages'][-1]['content'][:20]}?"
    client, assistant_id = setup(engine)
    set_id = make_set(client, assistant_id, [])
    drafted = ok(client.post(f"/api/evals/sets/{set_id}/draft", json={"count": 1, "offtopic": 0}), 201)["data"]
    assert [(c["question"], c["expected_sources"]) for c in drafted] == [
        ("Question about: Invoices are sent mo?", [{"url": BILLING}])]
    assert openai_api.requests[0]["messages"][0]["content"].startswith("Write one question a customer might ask")
    # A model that fails leaves the heading's question.
    openai_api.fail(500)
    again = ok(client.post(f"/api/evals/sets/{set_id}/draft", json={"count": 1, "offtopic": 0}), 201)["data"]
    assert [c["question"] for c in again] == ["What should I know about refunds?"]
