"""/api/evals: evaluation sets (cases, JSONL import/export, drafting), runs through the turn engine, comparisons."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response
from mangum import Mangum
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from shared.core.db import Row
from shared.core.http import create_app, settings_body_limit
from shared.evals import compare as comparing
from shared.evals import drafting, runner, sets
from shared.evals import models as m
from shared.evals.sets import CaseIn
from shared.guard.audit import record
from shared.guard.deps import AdminKey, Db


def _body_limit(scope: Scope) -> int:
    """A JSONL import may send up to MAX_IMPORT_BYTES (a 413 names it); every other route MAX_BODY_BYTES."""
    if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/import"):
        return sets.MAX_IMPORT_BYTES + 1000
    return settings_body_limit()


app = create_app("evals", description="Evaluation sets, runs at a template version, and their comparison.",
                 max_body_bytes=_body_limit)
# Any content type is read as JSONL text; OpenAPI says text/plain so clients and fuzzers know to send a string.
JSONL_BODY = {"requestBody": {"required": True, "content": {"text/plain": {"schema": {
    "type": "string", "description": "JSONL: one case per line"}}}}}


def set_public(row: Row) -> m.SetPublic:
    return m.SetPublic.model_validate(row)


def run_public(row: Row) -> m.RunPublic:
    return m.RunPublic.model_validate(row)


@app.post("/api/evals/sets", status_code=201, response_model=m.SetPublic, summary="Create an evaluation set")
def create_set(body: m.SetCreate, principal: AdminKey, conn: Db) -> m.SetPublic:
    with conn.transaction():
        row = sets.create_set(conn, principal.workspace_id, body.assistant_id, body.name, body.cases)
        if body.run_on_resync:
            row = sets.update_set(conn, principal.workspace_id, row["id"], run_on_resync=True)
        record(conn, principal, "eval_set.created", row["id"], {"name": body.name, "cases": len(body.cases)})
    return set_public(row)


@app.get("/api/evals/sets", response_model=m.SetsPublic, summary="List evaluation sets")
def list_sets(principal: AdminKey, conn: Db,
              assistant_id: Annotated[str | None, Query(max_length=100)] = None) -> m.SetsPublic:
    rows = sets.list_sets(conn, principal.workspace_id, assistant_id)
    return m.SetsPublic(data=[set_public(r) for r in rows], count=len(rows))


@app.get("/api/evals/sets/{set_id}", response_model=m.SetPublic, summary="Read an evaluation set")
def read_set(set_id: str, principal: AdminKey, conn: Db) -> m.SetPublic:
    return set_public(sets.get_set(conn, principal.workspace_id, set_id))


@app.patch("/api/evals/sets/{set_id}", response_model=m.SetPublic, summary="Rename a set or change run_on_resync")
def update_set(set_id: str, body: m.SetUpdate, principal: AdminKey, conn: Db) -> m.SetPublic:
    with conn.transaction():
        row = sets.update_set(conn, principal.workspace_id, set_id, name=body.name, run_on_resync=body.run_on_resync)
        record(conn, principal, "eval_set.updated", set_id, body.model_dump(exclude_none=True))
    return set_public(row)


@app.delete("/api/evals/sets/{set_id}", status_code=204, summary="Delete a set with its cases and runs")
def delete_set(set_id: str, principal: AdminKey, conn: Db) -> None:
    with conn.transaction():
        sets.delete_set(conn, principal.workspace_id, set_id)
        record(conn, principal, "eval_set.deleted", set_id)


@app.get("/api/evals/sets/{set_id}/cases", response_model=m.CasesPublic, summary="List a set's cases")
def list_cases(set_id: str, principal: AdminKey, conn: Db,
               status: Annotated[str | None, Query(pattern="^(active|draft)$")] = None) -> m.CasesPublic:
    rows = sets.list_cases(conn, principal.workspace_id, set_id, status)
    return m.CasesPublic(data=[m.CasePublic.model_validate(r) for r in rows], count=len(rows))


@app.post("/api/evals/sets/{set_id}/cases", status_code=201, response_model=m.CasePublic, summary="Add a case")
def add_case(set_id: str, body: CaseIn, principal: AdminKey, conn: Db) -> m.CasePublic:
    return m.CasePublic.model_validate(sets.add_case(conn, principal.workspace_id, set_id, body))


@app.patch("/api/evals/sets/{set_id}/cases/{case_id}", response_model=m.CasePublic,
           summary="Change a case (status active accepts a draft)")
def update_case(set_id: str, case_id: str, body: m.CaseUpdate, principal: AdminKey, conn: Db) -> m.CasePublic:
    changes = body.model_dump(exclude_unset=True)
    return m.CasePublic.model_validate(sets.update_case(conn, principal.workspace_id, set_id, case_id, changes))


@app.delete("/api/evals/sets/{set_id}/cases/{case_id}", status_code=204, summary="Delete a case")
def delete_case(set_id: str, case_id: str, principal: AdminKey, conn: Db) -> None:
    sets.delete_case(conn, principal.workspace_id, set_id, case_id)


@app.post("/api/evals/sets/{set_id}/import", summary="Add cases from JSONL (one case per line); ?replace=true first "
          "removes the set's cases", openapi_extra=JSONL_BODY)
async def import_cases(set_id: str, request: Request, principal: AdminKey, conn: Db,
                       replace: bool = False) -> dict[str, int]:
    raw = await request.body()
    count = await run_in_threadpool(sets.import_cases, conn, principal.workspace_id, set_id, raw, replace)
    return {"imported": count}


@app.get("/api/evals/sets/{set_id}/export", summary="The set's cases as JSONL",
         responses={200: {"content": {"application/x-ndjson": {}}}})
def export_cases(set_id: str, principal: AdminKey, conn: Db) -> Response:
    return Response(sets.export_jsonl(conn, principal.workspace_id, set_id), media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{set_id}.jsonl"'})


@app.post("/api/evals/sets/{set_id}/draft", status_code=201, response_model=m.CasesPublic,
          summary="Propose draft cases from the assistant's indexed pages, plus off-topic ones")
def draft(set_id: str, principal: AdminKey, conn: Db, body: m.DraftIn | None = None) -> m.CasesPublic:
    given = body or m.DraftIn()
    rows = drafting.draft(conn, principal.workspace_id, set_id, given.count, given.offtopic)
    return m.CasesPublic(data=[m.CasePublic.model_validate(r) for r in rows], count=len(rows))


@app.post("/api/evals/sets/{set_id}/accept", summary="Accept drafts (all, or those named): they run from now on")
def accept(set_id: str, principal: AdminKey, conn: Db, body: m.AcceptIn | None = None) -> dict[str, int]:
    with conn.transaction():
        count = sets.accept_drafts(conn, principal.workspace_id, set_id, body.case_ids if body else None)
        record(conn, principal, "eval_set.drafts_accepted", set_id, {"cases": count})
    return {"accepted": count}


@app.post("/api/evals/runs", status_code=202, response_model=m.RunPublic,
          summary="Run a set against its assistant at a template version (a queued job; poll the run)")
def create_run(body: m.RunCreate, principal: AdminKey, conn: Db) -> m.RunPublic:
    return run_public(runner.create_run(conn, principal.workspace_id, body.set_id,
                                        template_version=body.template_version, trigger=body.trigger,
                                        actor=principal.actor or principal.scope))


@app.get("/api/evals/runs", response_model=m.RunsPublic, summary="List runs, newest first")
def list_runs(principal: AdminKey, conn: Db, set_id: Annotated[str | None, Query(max_length=100)] = None,
              assistant_id: Annotated[str | None, Query(max_length=100)] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 50) -> m.RunsPublic:
    rows = runner.list_runs(conn, principal.workspace_id, set_id, assistant_id, limit)
    return m.RunsPublic(data=[run_public(r) for r in rows], count=len(rows))


@app.get("/api/evals/runs/{run_id}", response_model=m.RunPublic, summary="A run: status, progress and metrics")
def read_run(run_id: str, principal: AdminKey, conn: Db) -> m.RunPublic:
    return run_public(runner.get_run(conn, principal.workspace_id, run_id))


@app.get("/api/evals/runs/{run_id}/results", response_model=m.ResultsPublic,
         summary="Per case: answer, citations, passages, timings, tokens, cost and checks")
def results(run_id: str, principal: AdminKey, conn: Db) -> m.ResultsPublic:
    rows = runner.list_results(conn, principal.workspace_id, run_id)
    return m.ResultsPublic(data=rows, count=len(rows))


@app.post("/api/evals/runs/{run_id}/resume", status_code=202, response_model=m.RunPublic,
          summary="Queue the open cases of an unfinished run again")
def resume(run_id: str, principal: AdminKey, conn: Db) -> m.RunPublic:
    return run_public(runner.resume(conn, principal.workspace_id, run_id))


@app.get("/api/evals/runs/{run_id}/compare/{other_run_id}", summary="Metric deltas (other minus run) and the cases "
         "that changed, newly failing first")
def compare(run_id: str, other_run_id: str, principal: AdminKey, conn: Db) -> dict[str, Any]:
    return comparing.compare(conn, principal.workspace_id, run_id, other_run_id)


lambda_handler = Mangum(app)
