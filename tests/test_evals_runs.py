"""Evaluation runs through the real turn engine (QStash jobs, the OpenAI stand-in): exact metrics on a fixture
knowledge base, fabricated citations caught, abstentions scored, resuming and duplicate deliveries."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eval_fixtures import (
    BILLING,
    DONT_KNOW,
    RETURNS,
    SUPPORT,
    load_knowledge,
    make_set,
    ok,
    results_by_question,
    run_set,
)
from tests.fakes.chat_fixtures import clear_caches, make_assistant

# Question -> what the model stand-in answers (the last user message is the question).
ANSWERS = {
    "How long until refunds are paid?": 'Refunds are paid "within 14 days of the return" [1].',
    "Which payment methods do you accept?": 'We accept "credit cards and PayPal" [1].',       # quote not in [1]
    "When do parcels ship?": 'Parcels ship "within two working days" [1]. See also [4].',    # there is no [4]
    "Who won the football world cup in 1974?": DONT_KNOW,                                   # abstains, rightly
    "What is the capital of Mongolia?": "The capital of Mongolia is Ulaanbaatar.",          # answers off-topic
    "What are your opening hours?": DONT_KNOW,                                              # abstains, wrongly
}
CASES = [
    {"question": "How long until refunds are paid?", "expected_sources": [{"url": RETURNS}], "key_facts": ["14 days"]},
    {"question": "Which payment methods do you accept?", "expected_sources": [{"url": BILLING}],
     "key_facts": ["credit cards", "SEPA"]},
    {"question": "When do parcels ship?", "expected_sources": [{"url": SUPPORT}]},  # the page that is NOT retrieved
    {"question": "Who won the football world cup in 1974?", "expect_abstain": True},
    {"question": "What is the capital of Mongolia?", "expect_abstain": True},
    {"question": "What are your opening hours?", "expected_sources": [{"url": SUPPORT}]},
]


def question_of(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


@pytest.fixture
def scripted(openai_api: Any) -> Any:
    openai_api.reply = lambda body: ANSWERS[question_of(body)]
    return openai_api


@pytest.fixture
def assistant(engine: Any) -> tuple[str, Any]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace)
        load_knowledge(conn, workspace, assistant_id)
    return assistant_id, engine.client(key)


def test_a_run_scores_every_case_exactly(engine: Any, scripted: Any, assistant: Any) -> None:
    assistant_id, client = assistant
    set_id = make_set(client, assistant_id, CASES)
    run = run_set(engine, client, set_id)
    assert run["status"] == "succeeded" and (run["cases_total"], run["cases_done"]) == (6, 6)
    assert run["template_id"] == "default" and run["template_version"] == 1
    m = run["metrics"]
    # Ranks: refunds 1, payments 1, parcels None (Support is not retrieved), opening hours 1.
    assert (m["hit@1"], m["hit@3"], m["hit@5"], m["mrr"]) == (0.75, 0.75, 0.75, 0.75)
    # Marks: refunds [1] valid; payments [1] quotes what [1] doesn't say; parcels [1] valid, [4] names nothing.
    assert m["citation_validity"] == 0.5
    assert m["key_fact_recall"] == 0.6667           # 14 days, credit cards found; SEPA missing
    # Abstained: world cup (expected) and opening hours (not expected); Mongolia was answered.
    assert (m["abstain_precision"], m["abstain_recall"]) == (0.5, 0.5)
    # Lexical support of the answered cases: 1.0, 0.75 (PayPal), 0.75 (see, also), 0.0 (no passage at all).
    assert m["answer_support"] == 0.625 and m["answer_support_method"] == "lexical"
    assert m["passed"] == 2 and m["cases_failed"] == 0

    results = results_by_question(client, run["id"])
    refunds, payments, parcels = (results[q] for q in list(ANSWERS)[:3])
    assert refunds["scores"]["rank"] == 1 and refunds["scores"]["citations"] == [{"index": 1, "valid": True}]
    assert refunds["answer"] == ANSWERS["How long until refunds are paid?"]
    assert refunds["passages"][0]["url"] == RETURNS and refunds["citations"][0]["url"] == RETURNS
    assert payments["scores"]["citations"] == [{"index": 1, "valid": False, "problem": "quote not in passage",
                                                 "quote": "credit cards and PayPal"}]
    assert payments["scores"]["facts"] == [True, False]
    assert parcels["scores"]["rank"] is None
    assert parcels["scores"]["citations"] == [{"index": 1, "valid": True},
                                              {"index": 4, "valid": False, "problem": "no such passage"}]
    assert results["What is the capital of Mongolia?"]["abstained"] is False
    assert results["What are your opening hours?"]["abstained"] is True
    assert results["What are your opening hours?"]["scores"]["rank"] == 1
    # Timings, tokens and cost per case; the run adds them up.
    for row in results.values():
        assert row["status"] == "done" and row["timings"]["ttft_ms"] is not None and row["model"] == "gpt-4o-mini"
        assert row["usage"]["output_tokens"] > 0
        expected_cost = (row["usage"]["input_tokens"] * 0.15 + row["usage"]["output_tokens"] * 0.60) / 1e6
        assert row["cost_usd"] == pytest.approx(expected_cost)
    assert m["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in results.values()), abs=1e-6)
    assert m["tokens_out"] == sum(r["usage"]["output_tokens"] for r in results.values())
    assert m["ttft_p50_ms"] <= m["ttft_p95_ms"]
    # Each question reached the model once; evaluation turns leave no conversation behind.
    assert sorted(question_of(b) for b in scripted.requests) == sorted(ANSWERS)
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM conversations").fetchone()["n"] == 0


def test_an_interrupted_run_resumes_without_rerunning_finished_cases(engine: Any, scripted: Any,
                                                                    assistant: Any) -> None:
    assistant_id, client = assistant
    failed: list[str] = []

    def outage_at_the_third(body: dict[str, Any]) -> str:
        question = question_of(body)
        if question == CASES[2]["question"] and not failed:
            failed.append(question)
            raise RuntimeError("scripted outage")  # the stand-in answers 500: no provider can answer
        return ANSWERS[question]

    scripted.reply = outage_at_the_third
    set_id = make_set(client, assistant_id, CASES[:4])
    run = run_set(engine, client, set_id)
    assert run["status"] == "succeeded" and run["cases_done"] == 4
    asked = [question_of(b) for b in scripted.requests]
    # The two cases finished before the outage ran once; the interrupted one ran again after it.
    assert [asked.count(c["question"]) for c in CASES[:4]] == [1, 1, 2, 1]
    results = results_by_question(client, run["id"])
    assert [results[c["question"]]["attempts"] for c in CASES[:4]] == [1, 1, 2, 1]
    assert results[CASES[2]["question"]]["answer"] == ANSWERS[CASES[2]["question"]]
    assert run["metrics"]["cases_failed"] == 0 and run["metrics"]["hit@1"] == 0.6667
    with engine.db() as conn:
        batch = conn.execute("SELECT status, attempts FROM jobs WHERE name = 'eval_batch'").fetchall()
    assert [(b["status"], b["attempts"]) for b in batch] == [("succeeded", 2)]


def test_a_case_that_keeps_failing_is_recorded_as_failed_and_the_run_still_finishes(
        engine: Any, scripted: Any, assistant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assistant_id, client = assistant
    monkeypatch.setenv("EVAL_CASE_ATTEMPTS", "2")
    clear_caches()

    def always_down_for_parcels(body: dict[str, Any]) -> str:
        if question_of(body) == CASES[2]["question"]:
            raise RuntimeError("scripted outage")
        return ANSWERS[question_of(body)]

    scripted.reply = always_down_for_parcels
    run = run_set(engine, client, make_set(client, assistant_id, CASES[:3]))
    assert run["status"] == "succeeded" and run["metrics"]["cases_failed"] == 1
    failed = results_by_question(client, run["id"])[CASES[2]["question"]]
    assert failed["status"] == "error" and failed["attempts"] == 2
    assert failed["error"].startswith("providers_unavailable")
    # Metrics are over the cases that ran: the failed case counts nowhere.
    assert run["metrics"]["hit@1"] == 1.0


def test_duplicated_deliveries_run_and_count_each_case_once(engine: Any, scripted: Any, assistant: Any) -> None:
    from shared.core.queue import publish

    assistant_id, client = assistant
    set_id = make_set(client, assistant_id, CASES)
    scripted.delay = 0.01  # answers take a moment, so the copies overlap with the originals
    run = ok(client.post("/api/evals/runs", json={"set_id": set_id}), 202)
    with engine.db() as conn:
        workspace_id = conn.execute("SELECT workspace_id FROM eval_runs WHERE id = %s",
                                    (run["id"],)).fetchone()["workspace_id"]
        case_ids = [r["case_id"] for r in conn.execute("SELECT case_id FROM eval_results WHERE run_id = %s "
                                                       "ORDER BY ordinal", (run["id"],))]
    # QStash delivering every batch (and the fan-out) again, as separate messages, while the run is going.
    for _ in range(2):
        publish("eval_batch", {"workspace_id": workspace_id, "run_id": run["id"], "case_ids": case_ids})
        publish("eval_batch", {"workspace_id": workspace_id, "run_id": run["id"], "case_ids": case_ids[::-1]})
    publish("eval_run", {"workspace_id": workspace_id, "run_id": run["id"]})
    engine.wait_for_queue(timeout=60)
    done = ok(client.get(f"/api/evals/runs/{run['id']}"))
    assert done["status"] == "succeeded" and done["cases_done"] == 6
    assert sorted(question_of(b) for b in scripted.requests) == sorted(ANSWERS)  # each case ran once
    assert all(r["attempts"] == 1 for r in results_by_question(client, run["id"]).values())
    assert done["metrics"]["hit@1"] == 0.75 and done["metrics"]["abstain_precision"] == 0.5
    # Late copies of a finished run change nothing either.
    publish("eval_batch", {"workspace_id": workspace_id, "run_id": run["id"], "case_ids": case_ids})
    engine.wait_for_queue(timeout=30)
    assert ok(client.get(f"/api/evals/runs/{run['id']}"))["metrics"] == done["metrics"]
    assert len(scripted.requests) == 6


def test_a_case_left_running_by_a_killed_batch_is_taken_over_once_its_lease_runs_out(
        engine: Any, scripted: Any, assistant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.core.queue import publish

    monkeypatch.setenv("JOB_LEASE_SECONDS", "1")
    clear_caches()
    assistant_id, client = assistant
    set_id = make_set(client, assistant_id, CASES[:3])
    with engine.db() as conn:
        # What a batch killed mid-case leaves: the run going, its first case `running` under a lease still live.
        run = conn.execute("""INSERT INTO eval_runs (workspace_id, set_id, assistant_id, template_id, template_version,
                                                     status, started_at)
                              SELECT workspace_id, id, assistant_id, 'default', 1, 'running', now() FROM eval_sets
                              WHERE id = %s RETURNING id, workspace_id""", (set_id,)).fetchone()
        conn.execute("""INSERT INTO eval_results (run_id, case_id, workspace_id, ordinal, expected)
                        SELECT %s, id, workspace_id, row_number() OVER (ORDER BY created_at),
                               jsonb_build_object('question', question, 'expected_sources', expected_sources,
                                                  'key_facts', key_facts, 'expect_abstain', expect_abstain)
                        FROM eval_cases WHERE set_id = %s""", (run["id"], set_id))
        conn.execute("""UPDATE eval_results SET status = 'running', attempts = 1,
                               lease_until = now() + interval '5 seconds' WHERE run_id = %s AND ordinal = 1""",
                     (run["id"],))
    publish("eval_run", {"workspace_id": run["workspace_id"], "run_id": run["id"]})
    engine.wait_for_queue(timeout=60)
    done = ok(client.get(f"/api/evals/runs/{run['id']}"))
    assert done["status"] == "succeeded" and done["cases_done"] == 3
    results = results_by_question(client, run["id"])
    assert [results[c["question"]]["attempts"] for c in CASES[:3]] == [2, 1, 1]
    assert sorted(question_of(b) for b in scripted.requests) == sorted(c["question"] for c in CASES[:3])
    with engine.db() as conn:
        batch = conn.execute("SELECT status, attempts FROM jobs WHERE name = 'eval_batch'").fetchone()
    assert batch["status"] == "succeeded" and batch["attempts"] >= 2  # came back until the case was free
