"""One of each record of a workspace, made through the API as its admin would (tenant isolation and fuzz tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CANARY = "Canary-7f3a: knowledge only its own workspace may read."

# Tables whose rows carry workspace_id (plus `workspaces` itself): what a snapshot of a workspace covers.
WORKSPACE_TABLES = ("workspace_members", "api_keys", "templates", "template_versions", "assistants", "sources",
                    "documents", "chunks", "conversations", "messages", "feedback", "jobs", "performance_metrics",
                    "usage_daily", "audit_log", "eval_sets", "eval_cases", "eval_runs", "eval_results")


@dataclass
class Records:
    """The ids and keys of one seeded workspace."""

    workspace_id: str
    admin_key: str
    admin_key_id: str = ""
    template_id: str = ""
    assistant_id: str = ""
    source_id: str = ""
    document_id: str = ""
    conversation_id: str = ""          # started with the admin key
    user_message_id: str = ""
    message_id: str = ""               # the assistant's reply in that conversation
    feedback_id: str = ""
    chat_key: str = ""
    chat_key_id: str = ""
    chat_conversation_id: str = ""     # started with the chat key
    chat_message_id: str = ""          # the assistant's reply there
    visitor_token: str = ""            # the widget visitor who started it (conversations belong to one visitor)
    eval_set_id: str = ""
    eval_case_id: str = ""
    eval_run_id: str = ""              # a finished run of that set
    secrets: list[str] = field(default_factory=list)

    def ids(self) -> dict[str, str]:
        secret = ("admin_key", "chat_key", "visitor_token")
        return {k: v for k, v in vars(self).items() if isinstance(v, str) and v and k not in secret}


def _ok(reply: Any, *statuses: int) -> dict[str, Any]:
    request = reply.request
    assert reply.status_code in statuses, f"{request.method} {request.url}: {reply.status_code} {reply.text}"
    return reply.json()


def turn(client: Any, assistant_id: str, message: str, **extra: Any) -> dict[str, Any]:
    """One non-streamed chat turn (the offline answerer replies when no model is configured)."""
    return _ok(client.post("/api/chat", json={"assistant_id": assistant_id, "message": message, "stream": False,
                                              **extra}), 200)


def seed(engine: Any, name: str = "Acme") -> Records:
    """A workspace with a template, an assistant on it, a text source (ingested), a conversation with messages and
    feedback, a chat key with a conversation of its own, and the job rows ingestion left."""
    workspace_id, admin_key = engine.workspace(name)
    rec = Records(workspace_id, admin_key)
    admin = engine.client(admin_key)
    rec.admin_key_id = _ok(admin.get("/api/keys"), 200)["data"][0]["id"]
    rec.template_id = _ok(admin.post("/api/templates", json={
        "name": f"{name} support", "system_prompt": f"You help {name} customers."}), 201)["id"]
    rec.assistant_id = _ok(admin.post("/api/assistants", json={
        "name": f"{name} helper", "template_id": rec.template_id,
        "overrides": {"retrieval": {"mode": "keyword"}}}), 201)["id"]
    rec.source_id = _ok(admin.post("/api/sources", json={
        "assistant_id": rec.assistant_id, "kind": "text", "title": f"{name} returns",
        "content": f"# Returns\n\n{name} refunds are paid back within 14 days of the return. {CANARY}"}), 202)["id"]
    engine.wait_for_queue()
    pages = _ok(admin.get(f"/api/sources/{rec.source_id}/pages"), 200)["data"]
    rec.document_id = pages[0]["id"] if pages else ""
    answer = turn(admin, rec.assistant_id, "How long until refunds are paid?", user_id=f"{name}-visitor")
    rec.conversation_id, rec.user_message_id = answer["conversation_id"], answer["user_message_id"]
    rec.message_id = answer["message_id"]
    rec.feedback_id = _ok(admin.post("/api/feedback", json={"message_id": rec.message_id, "rating": "up",
                                                            "comment": "clear"}), 201)["id"]
    created = _ok(admin.post("/api/keys", json={"name": "widget", "scope": "chat",
                                                "assistant_ids": [rec.assistant_id]}), 201)
    rec.chat_key, rec.chat_key_id = created["key"], created["id"]
    widget = turn(engine.client(rec.chat_key), rec.assistant_id, "Do you refund shipping?")
    rec.chat_conversation_id, rec.chat_message_id = widget["conversation_id"], widget["message_id"]
    rec.visitor_token = widget["visitor_token"]
    rec.eval_set_id = _ok(admin.post("/api/evals/sets", json={
        "assistant_id": rec.assistant_id, "name": f"{name} checks",
        "cases": [{"question": "How long until refunds are paid?", "key_facts": ["14 days"]}]}), 201)["id"]
    rec.eval_case_id = _ok(admin.get(f"/api/evals/sets/{rec.eval_set_id}/cases"), 200)["data"][0]["id"]
    rec.eval_run_id = _ok(admin.post("/api/evals/runs", json={"set_id": rec.eval_set_id}), 202)["id"]
    engine.wait_for_queue()  # summaries, the run and the like: nothing may still be writing when a test snapshots
    rec.secrets = [admin_key, rec.chat_key, created["identity_secret"]]
    return rec


def snapshot(engine: Any, workspace_id: str) -> dict[str, list[str]]:
    """Every row of the workspace, as sorted JSON text per table: equal snapshots = nothing changed."""
    tables: dict[str, list[str]] = {}
    with engine.db() as conn:
        rows = conn.execute("SELECT to_jsonb(w)::text AS row FROM workspaces w WHERE id = %s", (workspace_id,))
        tables["workspaces"] = [r["row"] for r in rows]
        for table in WORKSPACE_TABLES:
            rows = conn.execute(f"SELECT to_jsonb(t)::text AS row FROM {table} t WHERE workspace_id = %s "
                                "ORDER BY 1", (workspace_id,))
            tables[table] = [r["row"] for r in rows]
    return tables


def describe_change(before: dict[str, list[str]], after: dict[str, list[str]]) -> str:
    """The first differences between two snapshots, readable in an assertion message."""
    lines = []
    for table in before:
        gone, new = set(before[table]) - set(after[table]), set(after[table]) - set(before[table])
        lines += [f"{table} - {json.loads(r)}" for r in sorted(gone)[:3]]
        lines += [f"{table} + {json.loads(r)}" for r in sorted(new)[:3]]
    return "\n".join(lines) or "no change"
