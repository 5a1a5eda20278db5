"""Evaluation runs: every active case of a set, through the real turn engine, at one template version.

A run is made with one `eval_results` row per case ('pending'). The `eval_run` job fans out: it publishes an
`eval_batch` job per EVAL_BATCH_SIZE open cases (a resume publishes the still-open ones again, under new
dedup ids). A batch claims each case with a lease (JOB_LEASE_SECONDS, renewed while the turn runs; a
pending case, or a running one whose lease ran out: its batch was killed), runs the turn through shared.dialog.chat
(`prepare` + `run`, the chat route's own engine, with the version's ResolvedAssistant handed in), scores it
and stores it only while it still holds that claim. So a duplicated delivery, or two batches naming the same
case, run and count it once; a finished case is never run again. A batch that finds a case held by another
fails after its other cases, so QStash brings it back: it takes the case over if the holder died.
A transient failure (no provider answered, the knowledge base unreachable) hands the case back and fails the
batch, so QStash retries it and the run resumes where it stopped; after
EVAL_CASE_ATTEMPTS the failure is recorded as the case's result instead. The batch that finds no open case
left computes the metrics from the rows and marks the run succeeded (one of them wins the update).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, execute, fetch_all, fetch_one
from shared.core.errors import NotFound, Unprocessable
from shared.core.settings import get_settings
from shared.evals import judge, scoring
from shared.evals.cost import cost_usd
from shared.evals.sets import get_set
from shared.workspace.assistants import ResolvedAssistant, resolve

log = logging.getLogger("dialog_engine.evals")
PASSAGE_CHARS = 1500     # a stored passage's text (the checks read the whole passage before it is cut)
TRANSIENT = ("providers_unavailable", "retrieval_unavailable", "store_failed", "internal_error")
RUN_COLUMNS = """id, set_id, assistant_id, template_id, template_version, status, trigger, metrics, alert,
                 created_by, error, created_at, started_at, finished_at, dispatches"""

ASSISTANT_AT_VERSION = """
    SELECT a.id, a.workspace_id, a.name, a.template_id, a.template_version AS pinned_version,
           a.overrides, a.allowed_origins, a.limits, a.created_at, a.updated_at,
           v.version AS template_version, v.config AS template_config
    FROM assistants a
    JOIN templates t ON t.id = a.template_id AND (t.workspace_id = a.workspace_id OR t.workspace_id IS NULL)
    LEFT JOIN template_versions v ON v.template_id = t.id
         AND v.version = coalesce(%(version)s::int, a.template_version, t.published_version, t.latest_version)
    WHERE a.id = %(id)s AND a.workspace_id = %(ws)s"""


class CaseInterrupted(Exception):
    """A case could not run for a passing reason; its batch fails so QStash retries it (and the run resumes)."""


class CaseHeldElsewhere(Exception):
    """Another batch holds a case of this one under a live lease: fail, so QStash brings this batch back and
    it takes the case over if that holder died (its lease then runs out), or finds it done."""


class CaseLease:
    """Renews one case's lease every third of it from a daemon thread while the turn runs, on a connection of
    its own: a batch that is killed stops renewing, so the next delivery takes the case over within a lease."""

    def __init__(self, run_id: str, case_id: str, attempt: int, lease_s: float) -> None:
        self.key, self.lease_s = (run_id, case_id, attempt), lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"case-lease-{case_id}", daemon=True)

    def __enter__(self) -> CaseLease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)

    def _beat(self) -> None:
        from shared.core.db import connect

        while not self._stop.wait(self.lease_s / 3):
            try:
                with connect() as conn:
                    conn.execute("""UPDATE eval_results SET lease_until = now() + make_interval(secs => %s)
                                    WHERE run_id = %s AND case_id = %s AND attempts = %s AND status = 'running'""",
                                 (self.lease_s, *self.key))
            except Exception as exc:  # the next beat tries again; the lease is three beats long
                log.warning("renewing the lease of case %s failed: %s", self.key[1], type(exc).__name__)


def assistant_at(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str,
                 version: int | None) -> ResolvedAssistant:
    """The assistant with its template at `version` (None: the version its chats use now), overrides applied."""
    row = fetch_one(conn, ASSISTANT_AT_VERSION, {"version": version, "id": assistant_id, "ws": workspace_id})
    if row is None:
        raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
    if row["template_version"] is None:
        raise Unprocessable(f"Template {row['template_id']!r} has no version {version}.",
                            code="template_version_not_found",
                            details=[{"field": "template_version", "problem": "no such version"}])
    return resolve(row)


def _run_not_found(run_id: str) -> NotFound:
    return NotFound(f"No evaluation run {run_id!r} in this workspace.", code="eval_run_not_found")


def create_run(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, *, template_version: int | None,
               trigger: str, actor: str | None) -> Row:
    """Make the run and its pending case rows (one transaction), then queue its fan-out job."""
    with conn.transaction():
        eval_set = get_set(conn, workspace_id, set_id)
        assistant = assistant_at(conn, workspace_id, eval_set["assistant_id"], template_version)
        run = fetch_one(conn, """
            INSERT INTO eval_runs (workspace_id, set_id, assistant_id, template_id, template_version, trigger,
                                   created_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (workspace_id, set_id, assistant.id, assistant.template_id, assistant.template_version, trigger, actor))
        assert run is not None
        added = execute(conn, """
            INSERT INTO eval_results (run_id, case_id, workspace_id, ordinal, expected)
            SELECT %(run)s, c.id, c.workspace_id, row_number() OVER (ORDER BY c.created_at, c.id),
                   jsonb_build_object('question', c.question, 'expected_sources', c.expected_sources,
                                      'key_facts', c.key_facts, 'expect_abstain', c.expect_abstain, 'tags', c.tags)
            FROM eval_cases c WHERE c.set_id = %(set)s AND c.workspace_id = %(ws)s AND c.status = 'active'""",
            {"run": run["id"], "set": set_id, "ws": workspace_id})
        if not added:
            raise Unprocessable("The set has no active cases to run (drafts must be accepted first).",
                                code="no_active_cases")
    dispatch(workspace_id, run["id"])
    return get_run(conn, workspace_id, run["id"])


def dispatch(workspace_id: str, run_id: str) -> None:
    from shared.core.queue import publish

    publish("eval_run", {"workspace_id": workspace_id, "run_id": run_id})


def get_run(conn: psycopg.Connection[Row], workspace_id: str, run_id: str) -> Row:
    row = fetch_one(conn, f"""
        SELECT {RUN_COLUMNS},
               (SELECT count(*) FROM eval_results r WHERE r.run_id = e.id) AS cases_total,
               (SELECT count(*) FROM eval_results r WHERE r.run_id = e.id AND r.status IN ('done', 'error'))
                   AS cases_done
        FROM eval_runs e WHERE id = %s AND workspace_id = %s""", (run_id, workspace_id))
    if row is None:
        raise _run_not_found(run_id)
    return row


def list_runs(conn: psycopg.Connection[Row], workspace_id: str, set_id: str | None, assistant_id: str | None,
              limit: int = 50) -> list[Row]:
    return fetch_all(conn, f"""
        SELECT {RUN_COLUMNS}, NULL::bigint AS cases_total, NULL::bigint AS cases_done FROM eval_runs
        WHERE workspace_id = %s AND (%s::text IS NULL OR set_id = %s) AND (%s::text IS NULL OR assistant_id = %s)
        ORDER BY created_at DESC, id DESC LIMIT %s""",
        (workspace_id, set_id, set_id, assistant_id, assistant_id, limit))


def list_results(conn: psycopg.Connection[Row], workspace_id: str, run_id: str) -> list[Row]:
    get_run(conn, workspace_id, run_id)
    return fetch_all(conn, """
        SELECT case_id, ordinal, expected, status, attempts, answer, citations, passages, abstained, timings, usage,
               cost_usd, model, scores, error, finished_at
        FROM eval_results WHERE run_id = %s AND workspace_id = %s ORDER BY ordinal""", (run_id, workspace_id))


def resume(conn: psycopg.Connection[Row], workspace_id: str, run_id: str) -> Row:
    """Queue the fan-out again for a run whose batches were lost (QStash gave up): open cases only."""
    run = get_run(conn, workspace_id, run_id)
    if run["status"] in ("succeeded", "failed"):
        raise Unprocessable(f"The run has {run['status']}; start a new one instead.", code="eval_run_finished")
    dispatch(workspace_id, run_id)
    return run


# --- The jobs ---------------------------------------------------------------------------------------

def fan_out(workspace_id: str, run_id: str) -> dict[str, Any]:
    """The `eval_run` job: mark the run running and publish a batch job per EVAL_BATCH_SIZE open cases."""
    from shared.core.db import connect
    from shared.core.queue import publish

    with connect() as conn:
        run = fetch_one(conn, """UPDATE eval_runs SET status = 'running', started_at = coalesce(started_at, now()),
                                        dispatches = dispatches + 1
                                 WHERE id = %s AND workspace_id = %s AND status IN ('queued', 'running')
                                 RETURNING dispatches""", (run_id, workspace_id))
        if run is None:
            return {"status": "skipped", "reason": "run finished or gone"}
        open_cases = [r["case_id"] for r in fetch_all(conn, """
            SELECT case_id FROM eval_results WHERE run_id = %s AND status IN ('pending', 'running')
            ORDER BY ordinal""", (run_id,))]
        if not open_cases:
            finish_if_complete(conn, workspace_id, run_id)
            return {"status": "finished", "batches": 0}
    size = get_settings().eval_batch_size
    batches = [open_cases[i:i + size] for i in range(0, len(open_cases), size)]
    for batch in batches:
        # A new dedup id per dispatch: a resume must not be dropped as a copy of a lost batch.
        publish("eval_batch", {"workspace_id": workspace_id, "run_id": run_id, "case_ids": batch},
                dedup_id=f"evbatch-{run_id}-{run['dispatches']}-{batch[0]}")
    return {"status": "dispatched", "batches": len(batches), "cases": len(open_cases)}


def run_batch(workspace_id: str, run_id: str, case_ids: list[str]) -> dict[str, Any]:
    """The `eval_batch` job: run each named case this batch can claim; finish the run when none is left open.

    A pooled connection is taken for each database step and none is held while a case's turn runs (its model
    answers for seconds; the turn takes its own connections): deliveries at once must not fill the pool."""
    from shared.core.db import connect

    ran, held = 0, []
    with connect() as conn:
        run = fetch_one(conn, "SELECT assistant_id, template_version, status FROM eval_runs "
                              "WHERE id = %s AND workspace_id = %s", (run_id, workspace_id))
        if run is None or run["status"] not in ("queued", "running"):
            return {"status": "skipped", "reason": "run finished or gone"}
        assistant = assistant_at(conn, workspace_id, run["assistant_id"], run["template_version"])
    lease_s = get_settings().job_lease_seconds
    for case_id in case_ids:
        with connect() as conn:
            claimed = fetch_one(conn, """
                UPDATE eval_results SET status = 'running', attempts = attempts + 1,
                                        lease_until = now() + make_interval(secs => %s)
                WHERE run_id = %s AND case_id = %s AND workspace_id = %s
                  AND (status = 'pending' OR (status = 'running' AND lease_until < now()))
                RETURNING expected, attempts""", (lease_s, run_id, case_id, workspace_id))
            if claimed is None and fetch_one(conn, """SELECT 1 FROM eval_results WHERE run_id = %s
                                                      AND case_id = %s AND status = 'running'""", (run_id, case_id)):
                held.append(case_id)  # another batch holds it
        if claimed is None:  # finished, or another batch holds it
            continue
        with CaseLease(run_id, case_id, claimed["attempts"], lease_s):
            _run_claimed(assistant, run_id, case_id, claimed)
        ran += 1
    with connect() as conn:
        finished = finish_if_complete(conn, workspace_id, run_id)
    if held:
        raise CaseHeldElsewhere(f"{len(held)} case(s) of run {run_id} are running in another batch")
    return {"status": "ran", "cases": ran, "run_finished": finished}


def _run_claimed(assistant: ResolvedAssistant, run_id: str, case_id: str, claimed: Row) -> None:
    from shared.core.db import connect

    try:
        outcome = asyncio.run(run_case(assistant, claimed["expected"], run_id))
    except Exception as exc:
        outcome = {"transient": True, "error": f"{type(exc).__name__}: {exc}"[:500]}
    if outcome.get("transient"):
        if claimed["attempts"] < get_settings().eval_case_attempts:
            # Hand the case back and fail the batch: QStash retries it and the run resumes here.
            with connect() as conn:
                execute(conn, """UPDATE eval_results SET status = 'pending', lease_until = NULL, error = %s
                                 WHERE run_id = %s AND case_id = %s AND attempts = %s AND status = 'running'""",
                        (outcome["error"], run_id, case_id, claimed["attempts"]))
            raise CaseInterrupted(f"case {case_id}: {outcome['error']}")
        outcome = {**outcome, "status": "error"}
    with connect() as conn:
        _store(conn, run_id, case_id, claimed["attempts"], outcome)


def _store(conn: psycopg.Connection[Row], run_id: str, case_id: str, attempt: int, outcome: dict[str, Any]) -> None:
    """Only while this attempt still holds the case: a batch that took it over after our lease ran out wins."""
    execute(conn, """
        UPDATE eval_results SET status = %(status)s, answer = %(answer)s, citations = %(citations)s,
               passages = %(passages)s, abstained = %(abstained)s, timings = %(timings)s, usage = %(usage)s,
               cost_usd = %(cost)s, model = %(model)s, scores = %(scores)s, error = %(error)s,
               finished_at = now(), lease_until = NULL
        WHERE run_id = %(run)s AND case_id = %(case)s AND attempts = %(attempt)s AND status = 'running'""",
        {"status": outcome.get("status", "done"), "answer": outcome.get("answer"),
         "citations": Jsonb(outcome.get("citations") or []), "passages": Jsonb(outcome.get("passages") or []),
         "abstained": outcome.get("abstained"), "timings": Jsonb(outcome.get("timings") or {}),
         "usage": Jsonb(outcome.get("usage") or {}), "cost": outcome.get("cost_usd"), "model": outcome.get("model"),
         "scores": Jsonb(outcome.get("scores") or {}), "error": outcome.get("error"),
         "run": run_id, "case": case_id, "attempt": attempt})


async def run_case(assistant: ResolvedAssistant, expected: dict[str, Any], run_id: str) -> dict[str, Any]:
    """One question through shared.dialog.chat's prepare + run; the conversation it leaves is deleted afterwards
    (evaluation turns are not customer conversations), its answer, passages and usage kept in the result."""
    from shared.dialog import chat
    from shared.dialog.conversations import delete_conversation

    question = expected["question"]
    started = time.perf_counter()
    turn = await chat.prepare(chat.TurnInput(
        workspace_id=assistant.workspace_id, assistant_id=assistant.id, message=question, assistant=assistant,
        external_user_id=f"eval:{run_id}", metadata={"eval_run": run_id}, started=started))
    engine_abstained = chat.should_abstain(turn)
    result = await chat.collect(chat.run(turn))
    from shared.core.db import connect

    try:
        with connect() as conn:
            delete_conversation(conn, assistant.workspace_id, turn.conversation_id)
    except Exception as exc:  # a leftover evaluation conversation is untidy, not wrong
        log.warning("evaluation conversation %s was not deleted: %s", turn.conversation_id, type(exc).__name__)
    error = result.get("error")
    if error and error.get("code") in TRANSIENT:
        return {"transient": True, "error": f"{error['code']}: {error.get('message', '')}"[:500]}
    return await _score(turn, result, expected, engine_abstained)


async def _score(turn: Any, result: dict[str, Any], expected: dict[str, Any], engine_abstained: bool
                 ) -> dict[str, Any]:
    from shared.dialog.prompting import phrase

    answer: str = result.get("content") or ""
    passages = [_passage(p) for p in turn.passages]
    full_text = {p.chunk_id: p.text for p in turn.passages}
    sources = result.get("sources") or []
    given = {s["index"]: full_text.get(s.get("chunk_id"), s.get("quote") or "") for s in sources}
    config, language = turn.assistant.config, turn.language
    refusals = [config.fallback_message or "", phrase("dont_know", language), phrase("offline_empty", language)]
    abstained = engine_abstained or any(r and scoring.normalise(answer) == scoring.normalise(r) for r in refusals)
    scores: dict[str, Any] = {"rank": scoring.source_rank(expected.get("expected_sources") or [], passages),
                              "citations": scoring.citation_checks(answer, given) if not abstained else [],
                              "facts": scoring.facts_found(answer, expected.get("key_facts") or [])}
    if not abstained:
        cited = [full_text[s["chunk_id"]] for s in sources if s.get("chunk_id") in full_text]
        scores["support"], scores["support_method"] = await judge.support(
            expected["question"], answer, cited or [p.text for p in turn.passages])
    usage = result.get("usage") or {}
    return {"status": "done", "answer": answer, "citations": sources, "passages": passages, "abstained": abstained,
            "timings": result.get("timings") or {}, "usage": usage, "model": result.get("model"),
            "cost_usd": cost_usd(result.get("provider"), result.get("model"), usage), "scores": scores,
            "error": f"{result['error']['code']}: {result['error']['message']}" if result.get("error") else None}


def _passage(p: Any) -> dict[str, Any]:
    return {"chunk_id": p.chunk_id, "document_id": p.document_id, "url": p.url, "title": p.title,
            "heading_path": p.heading_path, "text": p.text[:PASSAGE_CHARS], "score": round(p.score, 4),
            "keyword_score": p.keyword_score, "vector_score": p.vector_score}


def finish_if_complete(conn: psycopg.Connection[Row], workspace_id: str, run_id: str) -> bool:
    """With no case left open, compute the metrics and mark the run succeeded; True for the caller that did."""
    with conn.transaction():
        run = fetch_one(conn, "SELECT status FROM eval_runs WHERE id = %s AND workspace_id = %s FOR UPDATE",
                        (run_id, workspace_id))
        if run is None or run["status"] != "running":
            return False
        rows = fetch_all(conn, """SELECT status, expected, scores, abstained, timings, usage, cost_usd
                                  FROM eval_results WHERE run_id = %s ORDER BY ordinal""", (run_id,))
        if any(r["status"] in ("pending", "running") for r in rows):
            return False
        methods = sorted({str(m) for r in rows if (m := (r["scores"] or {}).get("support_method"))})
        metrics = scoring.run_metrics([{**r, "scores": r["scores"] or {}} for r in rows],
                                      ", ".join(methods) or judge.method())
        execute(conn, """UPDATE eval_runs SET status = 'succeeded', metrics = %s, finished_at = now()
                         WHERE id = %s""", (Jsonb(metrics), run_id))
    from shared.evals.alerts import after_run

    after_run(conn, workspace_id, run_id)
    return True
