"""A small fixture knowledge base and helpers for the evaluation tests (sets, runs, waiting for them)."""

from __future__ import annotations

from typing import Any

from tests.fakes.fixtures import add_page

RETURNS = "https://docs.example.com/returns"
BILLING = "https://docs.example.com/billing"
SUPPORT = "https://docs.example.com/support"
REFUNDS_TEXT = "Refunds are paid back within 14 days of the return."
SHIPPING_TEXT = "Parcels ship within two working days from our warehouse."
PAYMENT_TEXT = "We accept credit cards and SEPA bank transfers."
DONT_KNOW = "I'm sorry, I don't know the answer to that. I couldn't find it in the information I have."


def load_knowledge(conn: Any, workspace_id: str, assistant_id: str) -> None:
    """Three pages, five sections (keyword retrieval finds each by its own words)."""
    add_page(conn, workspace_id, assistant_id, "Returns", [("Refunds", REFUNDS_TEXT), ("Shipping", SHIPPING_TEXT)])
    add_page(conn, workspace_id, assistant_id, "Billing", [
        ("Invoices", "Invoices are sent monthly by email as PDF files."), ("Payment methods", PAYMENT_TEXT)])
    add_page(conn, workspace_id, assistant_id, "Support", [
        ("Opening hours", "Support answers from Monday to Friday between 9:00 and 17:00.")])


def ok(reply: Any, *statuses: int) -> Any:
    assert reply.status_code in (statuses or (200,)), f"{reply.request.method} {reply.request.url}: {reply.text}"
    return reply.json()


def make_set(client: Any, assistant_id: str, cases: list[dict[str, Any]], name: str = "Core questions") -> str:
    return ok(client.post("/api/evals/sets", json={"assistant_id": assistant_id, "name": name, "cases": cases}),
              201)["id"]


def run_set(engine: Any, client: Any, set_id: str, version: int | None = None) -> dict[str, Any]:
    """Start a run, let the queue deliver every job, and return the finished run."""
    body: dict[str, Any] = {"set_id": set_id}
    if version is not None:
        body["template_version"] = version
    run = ok(client.post("/api/evals/runs", json=body), 202)
    engine.wait_for_queue(timeout=60)
    return ok(client.get(f"/api/evals/runs/{run['id']}"))


def results_by_question(client: Any, run_id: str) -> dict[str, dict[str, Any]]:
    rows = ok(client.get(f"/api/evals/runs/{run_id}/results"))["data"]
    return {r["expected"]["question"]: r for r in rows}
