"""Knowledge syncs run the sets that ask for it; a metric that drops is recorded and posted to the alert webhook.
The answer judge, when configured, grades support and says so."""

from __future__ import annotations

import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scripts._serve import serve_in_thread
from tests.eval_fixtures import load_knowledge, make_set, ok, run_set
from tests.fakes.chat_fixtures import clear_caches, make_assistant


class Receiver:
    """An HTTP endpoint that keeps what is posted to it."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url, self.stop = serve_in_thread(Starlette(routes=[Route("/hook", self.hook, methods=["POST"])]))

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self.lock:
            self.posts.append(body)
        return JSONResponse({"ok": True})


def source(client: Any, assistant_id: str, content: str) -> str:
    created = ok(client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": "Refunds",
                                                   "content": content}), 202)
    return str(created["id"])


def test_a_sync_that_loses_a_fact_runs_the_set_and_alerts(engine: Any, monkeypatch: Any) -> None:
    receiver = Receiver()
    monkeypatch.setenv("EVAL_ALERT_WEBHOOK_URL", f"{receiver.url}/hook")
    clear_caches()
    try:
        _, key = engine.workspace()
        client = engine.client(key)
        assistant_id = ok(client.post("/api/assistants", json={
            "name": "Helper", "overrides": {"retrieval": {"mode": "keyword"}}}), 201)["id"]
        first = source(client, assistant_id, "Refunds are paid back within 14 days of the return.")
        engine.wait_for_queue()
        set_id = ok(client.post("/api/evals/sets", json={
            "assistant_id": assistant_id, "name": "Facts", "run_on_resync": True,
            "cases": [{"question": "How long until refunds are paid?", "key_facts": ["14 days"]}]}), 201)["id"]
        ok(client.post(f"/api/sources/{first}/resync"), 202)
        engine.wait_for_queue(timeout=60)
        [baseline] = ok(client.get("/api/evals/runs", params={"set_id": set_id}))["data"]
        assert baseline["trigger"] == "resync" and baseline["status"] == "succeeded"
        assert baseline["metrics"]["key_fact_recall"] == 1.0 and baseline["alert"] is None

        # The page is replaced by one that no longer says how long refunds take.
        assert client.delete(f"/api/sources/{first}").status_code == 200
        source(client, assistant_id, "Refunds are paid back after the return has been checked.")
        engine.wait_for_queue(timeout=60)
        latest = ok(client.get("/api/evals/runs", params={"set_id": set_id}))["data"][0]
        assert latest["id"] != baseline["id"] and latest["metrics"]["key_fact_recall"] == 0.0
        dropped = [{"metric": "key_fact_recall", "previous": 1.0, "current": 0.0}]
        assert latest["alert"]["dropped"] == dropped and latest["alert"]["delivered"] is True
        assert [(p["event"], p["run_id"], p["previous_run_id"], p["dropped"]) for p in receiver.posts] == [
            ("eval.metrics_dropped", latest["id"], baseline["id"], dropped)]
    finally:
        receiver.stop()


def test_the_judge_grades_support_when_configured(engine: Any, openai_api: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("EVAL_JUDGE", "openai:gpt-4o-mini")
    clear_caches()
    judged: list[str] = []

    def reply(body: dict[str, Any]) -> str:
        if body["messages"][0]["content"].startswith("You grade whether an answer"):
            judged.append(body["messages"][-1]["content"])
            return "0.8"
        return "Refunds are paid back within 14 days [1]."

    openai_api.reply = reply
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace)
        load_knowledge(conn, workspace, assistant_id)
    client = engine.client(key)
    run = run_set(engine, client, make_set(client, assistant_id, [{"question": "How long until refunds are paid?"}]))
    assert run["metrics"]["answer_support"] == 0.8
    assert run["metrics"]["answer_support_method"] == "judge:openai/gpt-4o-mini"
    assert len(judged) == 1 and "Refunds are paid back within 14 days of the return." in judged[0]
