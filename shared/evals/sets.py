"""Evaluation sets and their cases, per workspace and assistant; JSONL import and export.

A case: `question`, `expected_sources` ([{url} | {document_id} | {chunk_id}]), `key_facts` (strings the answer
must contain), `expect_abstain` (an out-of-scope question), `tags`. Drafted cases stay `draft` (not run)
until an admin accepts them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.core.db import Row, execute, fetch_all, fetch_one
from shared.core.errors import NotFound, Unprocessable

MAX_CASES = 2000          # per set: a run of this many turns is already an hour of model time
MAX_IMPORT_BYTES = 2_000_000
CASE_COLUMNS = ("id, set_id, question, expected_sources, key_facts, expect_abstain, tags, status, origin, "
                "created_at, updated_at")


class ExpectedSource(BaseModel):
    """One page or passage a good answer rests on: exactly one of url, document_id, chunk_id."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    document_id: str | None = Field(default=None, min_length=1, max_length=200)
    chunk_id: str | None = Field(default=None, min_length=1, max_length=300)

    @model_validator(mode="after")
    def _exactly_one(self) -> ExpectedSource:
        if sum(v is not None for v in (self.url, self.document_id, self.chunk_id)) != 1:
            raise ValueError("give exactly one of url, document_id, chunk_id")
        return self


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=8000)
    expected_sources: list[ExpectedSource] = Field(default_factory=list, max_length=20)
    key_facts: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(default_factory=list, max_length=20)
    expect_abstain: bool = False
    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(default_factory=list, max_length=20)
    status: Literal["active", "draft"] = "active"

    @model_validator(mode="after")
    def _abstain_has_no_sources(self) -> CaseIn:
        if self.expect_abstain and (self.expected_sources or self.key_facts):
            raise ValueError("a case that expects an abstention has no expected sources or key facts")
        return self

    def columns(self) -> dict[str, Any]:
        return {"question": self.question, "key_facts": Jsonb(self.key_facts), "tags": self.tags,
                "expected_sources": Jsonb([s.model_dump(exclude_none=True) for s in self.expected_sources]),
                "expect_abstain": self.expect_abstain, "status": self.status}


def _set_not_found(set_id: str) -> NotFound:
    return NotFound(f"No evaluation set {set_id!r} in this workspace.", code="eval_set_not_found")


def create_set(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str, name: str,
               cases: list[CaseIn]) -> Row:
    with conn.transaction():
        if fetch_one(conn, "SELECT 1 FROM assistants WHERE id = %s AND workspace_id = %s",
                     (assistant_id, workspace_id)) is None:
            raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
        row = fetch_one(conn, """INSERT INTO eval_sets (workspace_id, assistant_id, name) VALUES (%s, %s, %s)
                                 RETURNING id""", (workspace_id, assistant_id, name))
        assert row is not None
        add_cases(conn, workspace_id, row["id"], cases, origin="manual")
    return get_set(conn, workspace_id, row["id"])


def get_set(conn: psycopg.Connection[Row], workspace_id: str, set_id: str) -> Row:
    row = fetch_one(conn, """
        SELECT s.id, s.assistant_id, s.name, s.run_on_resync, s.created_at, s.updated_at,
               count(c.id) FILTER (WHERE c.status = 'active') AS active_cases,
               count(c.id) FILTER (WHERE c.status = 'draft') AS draft_cases
        FROM eval_sets s LEFT JOIN eval_cases c ON c.set_id = s.id
        WHERE s.id = %s AND s.workspace_id = %s GROUP BY s.id""", (set_id, workspace_id))
    if row is None:
        raise _set_not_found(set_id)
    return row


def list_sets(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str | None) -> list[Row]:
    return fetch_all(conn, """
        SELECT s.id, s.assistant_id, s.name, s.run_on_resync, s.created_at, s.updated_at,
               count(c.id) FILTER (WHERE c.status = 'active') AS active_cases,
               count(c.id) FILTER (WHERE c.status = 'draft') AS draft_cases
        FROM eval_sets s LEFT JOIN eval_cases c ON c.set_id = s.id
        WHERE s.workspace_id = %s AND (%s::text IS NULL OR s.assistant_id = %s)
        GROUP BY s.id ORDER BY s.created_at, s.id""", (workspace_id, assistant_id, assistant_id))


def update_set(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, *, name: str | None = None,
               run_on_resync: bool | None = None) -> Row:
    """Change the fields given (None = keep)."""
    if not execute(conn, """UPDATE eval_sets SET name = coalesce(%s, name),
                                   run_on_resync = coalesce(%s, run_on_resync), updated_at = now()
                            WHERE id = %s AND workspace_id = %s""", (name, run_on_resync, set_id, workspace_id)):
        raise _set_not_found(set_id)
    return get_set(conn, workspace_id, set_id)


def delete_set(conn: psycopg.Connection[Row], workspace_id: str, set_id: str) -> None:
    """Deletes its cases and runs too; refused (409) while a template is gated on it."""
    from shared.evals.gates import refuse_if_gating

    with conn.transaction():
        get_set(conn, workspace_id, set_id)
        refuse_if_gating(conn, workspace_id, set_id)
        execute(conn, "DELETE FROM eval_sets WHERE id = %s AND workspace_id = %s", (set_id, workspace_id))


def list_cases(conn: psycopg.Connection[Row], workspace_id: str, set_id: str,
               status: str | None = None) -> list[Row]:
    get_set(conn, workspace_id, set_id)
    return fetch_all(conn, f"""SELECT {CASE_COLUMNS} FROM eval_cases
                               WHERE set_id = %s AND workspace_id = %s AND (%s::text IS NULL OR status = %s)
                               ORDER BY created_at, id""", (set_id, workspace_id, status, status))


def add_cases(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, cases: list[CaseIn],
              origin: str) -> list[Row]:
    """Insert cases (the caller checked the set is the workspace's); refused past MAX_CASES per set."""
    if not cases:
        return []
    held = fetch_one(conn, "SELECT count(*) AS n FROM eval_cases WHERE set_id = %s", (set_id,))
    if held is not None and held["n"] + len(cases) > MAX_CASES:
        raise Unprocessable(f"A set holds at most {MAX_CASES} cases.", code="too_many_cases",
                            details={"limit": MAX_CASES, "held": held["n"], "adding": len(cases)})
    rows = []
    for case in cases:  # clock_timestamp(): cases keep the order they were given in, also within a transaction
        row = fetch_one(conn, f"""
            INSERT INTO eval_cases (workspace_id, set_id, question, expected_sources, key_facts, expect_abstain,
                                    tags, status, origin, created_at)
            VALUES (%(ws)s, %(set)s, %(question)s, %(expected_sources)s, %(key_facts)s, %(expect_abstain)s,
                    %(tags)s, %(status)s, %(origin)s, clock_timestamp())
            RETURNING {CASE_COLUMNS}""", {"ws": workspace_id, "set": set_id, "origin": origin, **case.columns()})
        assert row is not None
        rows.append(row)
    execute(conn, "UPDATE eval_sets SET updated_at = now() WHERE id = %s", (set_id,))
    return rows


def add_case(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, case: CaseIn) -> Row:
    with conn.transaction():
        get_set(conn, workspace_id, set_id)
        return add_cases(conn, workspace_id, set_id, [case], origin="manual")[0]


def update_case(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, case_id: str,
                changes: dict[str, Any]) -> Row:
    """Change some fields (accepting a draft = status 'active'); the whole case is validated again."""
    with conn.transaction():
        current = fetch_one(conn, f"""SELECT {CASE_COLUMNS} FROM eval_cases
                                      WHERE id = %s AND set_id = %s AND workspace_id = %s FOR UPDATE""",
                            (case_id, set_id, workspace_id))
        if current is None:
            raise NotFound(f"No case {case_id!r} in this set.", code="eval_case_not_found")
        merged = {k: current[k] for k in CaseIn.model_fields} | changes
        case = validate_case(merged)
        row = fetch_one(conn, f"""
            UPDATE eval_cases SET question = %(question)s, expected_sources = %(expected_sources)s,
                   key_facts = %(key_facts)s, expect_abstain = %(expect_abstain)s, tags = %(tags)s,
                   status = %(status)s, updated_at = now()
            WHERE id = %(id)s AND workspace_id = %(ws)s RETURNING {CASE_COLUMNS}""",
            {"id": case_id, "ws": workspace_id, **case.columns()})
        assert row is not None
        return row


def delete_case(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, case_id: str) -> None:
    if not execute(conn, "DELETE FROM eval_cases WHERE id = %s AND set_id = %s AND workspace_id = %s",
                   (case_id, set_id, workspace_id)):
        raise NotFound(f"No case {case_id!r} in this set.", code="eval_case_not_found")


def accept_drafts(conn: psycopg.Connection[Row], workspace_id: str, set_id: str,
                  case_ids: list[str] | None) -> int:
    """Make drafts active (all of the set's, or those named); returns how many changed."""
    get_set(conn, workspace_id, set_id)
    return execute(conn, """UPDATE eval_cases SET status = 'active', updated_at = now()
                            WHERE set_id = %s AND workspace_id = %s AND status = 'draft'
                              AND (%s::text[] IS NULL OR id = ANY(%s::text[]))""",
                   (set_id, workspace_id, case_ids, case_ids))


def validate_case(data: Any, line: int | None = None) -> CaseIn:
    """A CaseIn, or Unprocessable naming the fields (and the JSONL line) at fault."""
    try:
        return CaseIn.model_validate(data)
    except ValidationError as exc:
        where = f"line {line}: " if line is not None else ""
        details = [{"line": line, "field": ".".join(str(p) for p in e["loc"]) or "(case)", "problem": e["msg"]}
                   for e in exc.errors(include_url=False, include_input=False)]
        raise Unprocessable(f"Invalid case: {where}" + "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5]),
                            code="invalid_case", details=details) from None


def parse_jsonl(raw: bytes) -> list[CaseIn]:
    """One case per non-empty line; every problem names its line. Nothing is stored unless all lines pass."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise Unprocessable(f"An import holds at most {MAX_IMPORT_BYTES} bytes.", code="import_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unprocessable("The import is not UTF-8 text.", code="invalid_jsonl") from None
    cases = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise Unprocessable(f"Line {number} is not JSON.", code="invalid_jsonl",
                                details=[{"line": number, "problem": "not JSON"}]) from None
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in ("id", "origin", "created_at", "updated_at", "set_id")}
        cases.append(validate_case(data, line=number))
    if not cases:
        raise Unprocessable("The import holds no cases.", code="invalid_jsonl")
    return cases


def import_cases(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, raw: bytes, replace: bool) -> int:
    cases = parse_jsonl(raw)
    with conn.transaction():
        get_set(conn, workspace_id, set_id)
        if replace:
            execute(conn, "DELETE FROM eval_cases WHERE set_id = %s AND workspace_id = %s", (set_id, workspace_id))
        return len(add_cases(conn, workspace_id, set_id, cases, origin="import"))


def export_jsonl(conn: psycopg.Connection[Row], workspace_id: str, set_id: str) -> str:
    """The set's cases as JSONL that import_cases reads back (ids, origin and times included for reference)."""
    lines = []
    for row in list_cases(conn, workspace_id, set_id):
        lines.append(json.dumps({"id": row["id"], "question": row["question"],
                                 "expected_sources": row["expected_sources"], "key_facts": row["key_facts"],
                                 "expect_abstain": row["expect_abstain"], "tags": row["tags"],
                                 "status": row["status"], "origin": row["origin"]}, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")
