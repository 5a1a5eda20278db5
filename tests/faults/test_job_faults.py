"""Every job type delivered twice, out of order and killed mid-run then retried: the same end state as one
clean run. A retry of a killed attempt runs again (its lease ran out); a retry while an attempt still holds
its lease is deferred with 503 + Retry-After (a 2xx would make QStash drop it); a duplicate of a finished
job is answered `duplicate` and changes nothing; concurrent copies of one delivery count as one attempt.

One job (`ingest_pages`) is killed for real: its function process gets SIGKILL mid-fetch and a QStash
stand-in that keeps the real backoff and honours Retry-After delivers the retries to the restarted one."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb

from scripts._serve import serve_in_thread
from tests.fakes.crawl_fixtures import knowledge_setup
from tests.fakes.fixtures import load_corpus, make_assistant
from tests.plugins.stack import clear_caches
from tests.test_jobs import signature

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0  # short, so a killed attempt's lease runs out within the test
COPIES = 3     # concurrent copies of one delivery
TALLY: Counter[str] = Counter()  # the summary line's figures


@pytest.fixture(scope="module", autouse=True)
def summary_line(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and TALLY:
        with capture.global_and_fixture_disabled():  # printed even without -s
            reporter.write_line("\njob faults: " + ", ".join(f"{key} {n}" for key, n in sorted(TALLY.items())))


@pytest.fixture
def short_lease(engine: Any, monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("JOB_LEASE_SECONDS", str(LEASE_S))
    clear_caches()
    return LEASE_S


# ---------------------------------------------------------------- delivering like QStash


def deliver(base_url: str, name: str, payload: dict[str, Any], message_id: str, retried: int = 0) -> httpx.Response:
    """One signed delivery of a message, exactly as QStash makes it."""
    body = json.dumps(payload).encode()
    url = f"{base_url}/api/jobs/{name}"
    headers = {"content-type": "application/json", "upstash-message-id": message_id,
               "upstash-retried": str(retried),
               "upstash-signature": signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], url, body)}
    reply = httpx.post(url, content=body, headers=headers, timeout=60)
    TALLY["deliveries"] += 1
    TALLY[outcome(reply)] += 1
    return reply


def outcome(reply: httpx.Response) -> str:
    if reply.status_code == 200:
        return reply.json()["status"]
    return f"{reply.status_code} {reply.json()['error']['code']}"


def job_row(engine: Any, message_id: str) -> dict[str, Any] | None:
    with engine.db() as conn:
        return conn.execute("SELECT status, attempts, error, finished_at FROM jobs WHERE message_id = %s",
                            (message_id,)).fetchone()


def leave_killed_attempt(engine: Any, name: str, payload: dict[str, Any], message_id: str, *,
                         lease_left_s: float = -1.0) -> None:
    """The row an attempt leaves when its function is killed after claiming: `running`, never finished,
    its lease (where the schema has one) renewed last `-lease_left_s` seconds ago."""
    with engine.db() as conn:
        conn.execute("""INSERT INTO jobs (name, payload, message_id, workspace_id, attempts, status, started_at)
                        VALUES (%s, %s, %s, %s, 1, 'running', now() - interval '40 seconds')""",
                     (name, Jsonb(payload), message_id, payload.get("workspace_id")))
        leases = conn.execute("""SELECT 1 FROM information_schema.columns
                                 WHERE table_name = 'jobs' AND column_name = 'lease_until'""").fetchone()
        if leases:
            conn.execute("UPDATE jobs SET lease_until = now() + make_interval(secs => %s) WHERE message_id = %s",
                         (lease_left_s, message_id))


def new_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


# ---------------------------------------------------------------- one scenario per job type


@dataclass
class Scenario:
    payload: dict[str, Any]
    state: Callable[[], Any]                  # what a user would see of the job's effect
    ran: Callable[[Any], bool]                # the effect of one run is there
    reruns_are_new_runs: bool = False         # another message id is another run (a second backup)
    notes: dict[str, Any] = field(default_factory=dict)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def knowledge_state(engine: Any, source_id: str) -> dict[str, Any]:
    with engine.db() as conn:
        source = conn.execute("""SELECT status, error, pages_found, pages_done, pages_failed, chunks_count,
                                        sync_generation, crawl_id, next_sync_at
                                 FROM sources WHERE id = %s""", (source_id,)).fetchone()
        documents = conn.execute("""SELECT url, status, error, content_hash, sync_generation FROM documents
                                    WHERE source_id = %s ORDER BY url""", (source_id,)).fetchall()
        chunks = conn.execute("""SELECT id, url, heading_path, text, vector_id FROM chunks WHERE source_id = %s
                                 ORDER BY id""", (source_id,)).fetchall()
    return {"source": source, "documents": documents,
            "chunks": [(c["id"], c["url"], c["heading_path"], _digest(c["text"]), c["vector_id"]) for c in chunks]}


def insert_source(engine: Any, workspace_id: str, assistant_id: str, kind: str, url: str, **columns: Any) -> str:
    names = ["workspace_id", "assistant_id", "kind", "url", "sync_generation", *columns]
    values = [workspace_id, assistant_id, kind, url, 1, *columns.values()]
    with engine.db() as conn:
        row = conn.execute(f"INSERT INTO sources ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
                           "RETURNING id", values).fetchone()
    return row["id"]


def long_conversation(engine: Any, workspace_id: str, assistant_id: str, turns: int) -> str:
    from shared.dialog.conversations import finish_turn, start_turn

    conversation = None
    with engine.db() as conn:
        for n in range(turns):
            start = start_turn(conn, workspace_id=workspace_id, assistant_id=assistant_id,
                               conversation_id=conversation, user_message=f"Question {n} about anvils. More text.")
            conversation = start.conversation_id
            finish_turn(conn, workspace_id=workspace_id, conversation_id=conversation,
                        content=f"Answer {n}: anvils ship in {n} days. Details follow.", citations=[], model="m",
                        provider="offline", failover=None, usage={}, timings={}, status="complete", error=None)
    assert conversation is not None
    return conversation


def conversation_state(engine: Any) -> list[dict[str, Any]]:
    with engine.db() as conn:
        return conn.execute("SELECT id, summary, summary_through FROM conversations ORDER BY id").fetchall()


def followups(engine: Any, name: str) -> list[tuple[str, str]]:
    """The jobs a run queued (not the job under test), by name and status."""
    with engine.db() as conn:
        rows = conn.execute("SELECT name, status FROM jobs WHERE name <> %s ORDER BY name, status", (name,))
        return [(r["name"], r["status"]) for r in rows]


def scenario_ping(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    return Scenario({"echo": "faults"}, state=lambda: None, ran=lambda _: True)


def scenario_cleanup(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    with engine.db() as conn:
        for minutes, value in ((0, 10.0), (10, 20.0), (70, 5.0)):
            conn.execute("""INSERT INTO performance_metrics (name, value, "timestamp", metadata)
                            VALUES ('chat.ttft_ms', %s, date_trunc('hour', now()) - interval '40 days'
                                    + make_interval(mins => %s), '{}')""", (value, minutes))
        conn.execute("""INSERT INTO jobs (name, status, message_id, created_at)
                        VALUES ('ping', 'succeeded', 'old-1', now() - interval '40 days')""")

    def state() -> Any:
        with engine.db() as conn:
            metrics = conn.execute("""SELECT name, value, "timestamp", metadata FROM performance_metrics
                                      WHERE name = 'chat.ttft_ms' ORDER BY "timestamp" """).fetchall()
            old_jobs = conn.execute("SELECT count(*) AS n FROM jobs WHERE message_id = 'old-1'").fetchone()["n"]
        return {"metrics": metrics, "old_jobs": old_jobs}

    return Scenario({"cron": "cleanup"}, state, ran=lambda s: s["old_jobs"] == 0 and len(s["metrics"]) == 2)


def scenario_summarize_conversation(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    from shared.dialog.conversations import HISTORY_LIMIT

    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
    conversation = long_conversation(engine, workspace_id, assistant_id, HISTORY_LIMIT)
    return Scenario({"workspace_id": workspace_id, "conversation_id": conversation},
                    state=lambda: conversation_state(engine), ran=lambda s: bool(s[0]["summary"]))


def scenario_refresh_summaries(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    from shared.dialog.conversations import HISTORY_LIMIT

    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
    long_conversation(engine, workspace_id, assistant_id, HISTORY_LIMIT)
    long_conversation(engine, workspace_id, assistant_id, 2)

    def state() -> Any:
        return {"conversations": conversation_state(engine), "queued": followups(engine, "refresh_summaries")}

    return Scenario({"cron": "summaries"}, state,
                    ran=lambda s: s["queued"] == [("summarize_conversation", "succeeded")]
                    and sum(bool(c["summary"]) for c in s["conversations"]) == 1)


def scenario_vectorize(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    request.getfixturevalue("embeddings_api")
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        load_corpus(conn, workspace_id, make_assistant(conn, workspace_id), embed=False)

    def state() -> Any:
        with engine.db() as conn:
            return conn.execute("""SELECT id, vector_id, embedding IS NOT NULL AS embedded FROM chunks
                                   ORDER BY id""").fetchall()

    return Scenario({"workspace_id": workspace_id, "batch": 3}, state,
                    ran=lambda s: len(s) == 7 and all(c["vector_id"] and c["embedded"] for c in s))


def scenario_build_vector_index(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    from shared.knowledge.vectors.bulk_index import index_state

    request.getfixturevalue("embeddings_api")
    workspace_id, _ = engine.workspace()
    with engine.db() as conn:
        load_corpus(conn, workspace_id, make_assistant(conn, workspace_id))
        conn.execute("DROP INDEX chunks_embedding")  # a bulk load set it aside and has ended

    def state() -> Any:
        with engine.db() as conn:
            return index_state(conn)

    return Scenario({"cron": "vector_index"}, state, ran=lambda s: s == "valid")


def scenario_crawl_source(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    served = request.getfixturevalue("site")
    _, workspace_id, assistant_id = knowledge_setup(engine)
    source_id = insert_source(engine, workspace_id, assistant_id, "url", f"{served.url}/pricing")
    return Scenario({"workspace_id": workspace_id, "source_id": source_id, "generation": 1},
                    state=lambda: knowledge_state(engine, source_id),
                    ran=lambda s: s["source"]["status"] == "ready" and len(s["chunks"]) > 0)


def scenario_ingest_pages(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    served = request.getfixturevalue("site")
    source_id, payload = indexing_page_source(engine, served)
    return Scenario(payload, state=lambda: knowledge_state(engine, source_id),
                    ran=lambda s: s["documents"][0]["status"] == "ready" and len(s["chunks"]) > 0)


def indexing_page_source(engine: Any, served: Any, path: str = "/pricing") -> tuple[str, dict[str, Any]]:
    """A one-page source mid-sync: its page registered and pending, as crawl_source leaves it."""
    from shared.knowledge.crawl.pipeline import load_source, register_pages

    _, workspace_id, assistant_id = knowledge_setup(engine)
    url = f"{served.url}{path}"
    source_id = insert_source(engine, workspace_id, assistant_id, "url", url, status="indexing")
    with engine.db() as conn:
        source = load_source(conn, source_id)
        assert source is not None and register_pages(conn, source, 1, [url]) == [url]
    return source_id, {"workspace_id": workspace_id, "source_id": source_id, "generation": 1, "url": url,
                       "depth": 0, "follow": False}


def scenario_poll_crawl(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    fake = request.getfixturevalue("firecrawl_api")
    fake.send_webhooks = False
    base = "https://anvils.example"
    fake.pages.update({f"{base}/": ("Home", "# Home\n\nWelcome to the anvil shop.", 200),
                       f"{base}/returns": ("Returns", "# Returns\n\nReturn anvils within 60 days.", 200)})
    fake.crawls["crawl-1"] = {"urls": list(fake.pages), "polls": 0, "status": "scraping", "body": {}}
    _, workspace_id, assistant_id = knowledge_setup(engine)
    source_id = insert_source(engine, workspace_id, assistant_id, "site", f"{base}/", status="crawling",
                              crawl_id="crawl-1")
    return Scenario({"workspace_id": workspace_id, "source_id": source_id, "generation": 1, "crawl_id": "crawl-1",
                     "poll": 1}, state=lambda: knowledge_state(engine, source_id),
                    ran=lambda s: s["source"]["status"] == "ready" and s["source"]["pages_done"] == 2)


def scenario_resync_due(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    served = request.getfixturevalue("site")
    _, workspace_id, assistant_id = knowledge_setup(engine)
    source_id = insert_source(engine, workspace_id, assistant_id, "url", f"{served.url}/about", status="ready",
                              sync_interval_hours=24)
    with engine.db() as conn:
        conn.execute("UPDATE sources SET next_sync_at = now() - interval '1 minute' WHERE id = %s", (source_id,))
    return Scenario({"cron": "resync"}, state=lambda: knowledge_state(engine, source_id),
                    ran=lambda s: s["source"]["sync_generation"] == 2 and s["source"]["status"] == "ready"
                    and len(s["chunks"]) > 0)


def scenario_backup(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    s3, bucket = request.getfixturevalue("backup_bucket")
    return Scenario({"cron": "backup"}, state=lambda: len(s3.list_objects_v2(Bucket=bucket).get("Contents", [])),
                    ran=lambda backups: backups == 1, reruns_are_new_runs=True)


def evaluation_run(engine: Any) -> tuple[str, str, list[str]]:
    """A running evaluation run of three cases (offline answerer) whose first case a killed batch left
    `running` under a lease that ran out; nothing queued yet. Returns (workspace, run id, case ids)."""
    from tests.eval_fixtures import load_knowledge

    workspace_id, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id)
        load_knowledge(conn, workspace_id, assistant_id)
    cases = [{"question": "How long until refunds are paid?", "key_facts": ["14 days"]},
             {"question": "When do parcels ship?"}, {"question": "Who won the 1974 world cup?", "expect_abstain": True}]
    set_id = httpx.post(f"{engine.url}/api/evals/sets", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                        json={"assistant_id": assistant_id, "name": "faults", "cases": cases}).json()["id"]
    with engine.db() as conn:
        run_id = conn.execute("""INSERT INTO eval_runs (workspace_id, set_id, assistant_id, template_id,
                                                        template_version, status, started_at)
                                 VALUES (%s, %s, %s, 'default', 1, 'running', now()) RETURNING id""",
                              (workspace_id, set_id, assistant_id)).fetchone()["id"]
        conn.execute("""INSERT INTO eval_results (run_id, case_id, workspace_id, ordinal, expected)
                        SELECT %s, id, workspace_id, row_number() OVER (ORDER BY created_at),
                               jsonb_build_object('question', question, 'expected_sources', expected_sources,
                                                  'key_facts', key_facts, 'expect_abstain', expect_abstain)
                        FROM eval_cases WHERE set_id = %s""", (run_id, set_id))
        case_ids = [r["case_id"] for r in conn.execute(
            "SELECT case_id FROM eval_results WHERE run_id = %s ORDER BY ordinal", (run_id,))]
        conn.execute("""UPDATE eval_results SET status = 'running', attempts = 1,
                               lease_until = now() - interval '1 second' WHERE run_id = %s AND case_id = %s""",
                     (run_id, case_ids[0]))
    return workspace_id, run_id, case_ids


def evaluation_state(engine: Any, run_id: str) -> dict[str, Any]:
    with engine.db() as conn:
        run = conn.execute("SELECT status, metrics FROM eval_runs WHERE id = %s", (run_id,)).fetchone()
        results = conn.execute("""SELECT case_id, status, attempts, answer, abstained, scores FROM eval_results
                                  WHERE run_id = %s ORDER BY ordinal""", (run_id,)).fetchall()
    return {"run": run, "results": results}


def evaluation_ran(state: dict[str, Any]) -> bool:
    # Each case ran once, the killed one's takeover counting as its second attempt; the metrics are there.
    return (state["run"]["status"] == "succeeded" and state["run"]["metrics"]["key_fact_recall"] == 1.0
            and [(r["status"], r["attempts"]) for r in state["results"]] == [("done", 2), ("done", 1), ("done", 1)])


def scenario_eval_batch(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    workspace_id, run_id, case_ids = evaluation_run(engine)
    return Scenario({"workspace_id": workspace_id, "run_id": run_id, "case_ids": case_ids},
                    state=lambda: evaluation_state(engine, run_id), ran=evaluation_ran)


def scenario_eval_run(engine: Any, request: pytest.FixtureRequest) -> Scenario:
    workspace_id, run_id, _ = evaluation_run(engine)
    return Scenario({"workspace_id": workspace_id, "run_id": run_id}, state=lambda: evaluation_state(engine, run_id),
                    ran=evaluation_ran)


SCENARIOS = {name.removeprefix("scenario_"): fn for name, fn in globals().items() if name.startswith("scenario_")}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def backup_bucket(engine: Any, s3_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    import boto3

    bucket = f"backups-{uuid.uuid4().hex[:12]}"
    env = {"BACKUP_BUCKET": bucket,
           "BACKUP_RECIPIENT": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",  # age's example key
           "BACKUP_S3_ENDPOINT_URL": s3_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


def test_every_job_type_in_functions_has_a_scenario() -> None:
    jobs = {p.stem for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_")}
    assert jobs == set(SCENARIOS)


# ---------------------------------------------------------------- the same end state, whatever the deliveries


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_killed_retried_duplicated_and_out_of_order_deliveries_end_as_one_clean_run(
        engine, short_lease, request, name) -> None:
    scenario = SCENARIOS[name](engine, request)
    killed, earlier = new_id(), new_id()

    # Killed mid-run: the retries (three copies at once) find the lease run out; exactly one runs the job
    # again and counts as the second attempt, the others are deferred or see it done.
    leave_killed_attempt(engine, name, scenario.payload, killed)
    with ThreadPoolExecutor(COPIES) as pool:
        replies = list(pool.map(lambda _: deliver(engine.url, name, scenario.payload, killed, retried=1),
                                range(COPIES)))
    outcomes = Counter(outcome(r) for r in replies)
    assert outcomes["succeeded"] == 1, outcomes
    assert set(outcomes) <= {"succeeded", "duplicate", "503 job_running"}, outcomes
    assert all(r.headers.get("retry-after") for r in replies if r.status_code == 503)
    assert [r.json()["attempt"] for r in replies if r.status_code == 200 and "attempt" in r.json()] == [2]
    engine.wait_for_queue(timeout=30)
    after_one_run = scenario.state()
    assert scenario.ran(after_one_run), after_one_run
    finished = job_row(engine, killed)
    assert finished is not None and finished["status"] == "succeeded" and finished["attempts"] == 2

    # Delivered again after it finished: a true duplicate, answered 200, nothing runs or changes.
    again = deliver(engine.url, name, scenario.payload, killed, retried=2)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    engine.wait_for_queue(timeout=30)
    assert job_row(engine, killed) == finished
    assert scenario.state() == after_one_run

    # Out of order: an earlier message of the same job (a retry published before, arriving after) runs on
    # top of the finished one and leaves the state as it was.
    if not scenario.reruns_are_new_runs:
        late = deliver(engine.url, name, scenario.payload, earlier, retried=1)
        assert late.status_code == 200 and late.json()["status"] == "succeeded", late.text
        engine.wait_for_queue(timeout=30)
        assert scenario.state() == after_one_run
    TALLY["job types"] += 1


def test_a_retry_while_the_attempt_holds_its_lease_is_deferred_not_dropped(engine, short_lease) -> None:
    payload, message_id = {"echo": "busy"}, new_id()
    leave_killed_attempt(engine, "ping", payload, message_id, lease_left_s=LEASE_S)

    reply = deliver(engine.url, "ping", payload, message_id, retried=1)
    # Not a 2xx: QStash would drop the message, and if that attempt then died the job would never run.
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "job_running", reply.text
    assert 1 <= int(reply.headers["retry-after"]) <= LEASE_S + 3
    assert job_row(engine, message_id)["attempts"] == 1  # a deferred delivery is not an attempt

    time.sleep(float(reply.headers["retry-after"]))  # as QStash does; nobody renewed the lease meanwhile
    later = deliver(engine.url, "ping", payload, message_id, retried=2)
    assert later.status_code == 200 and later.json()["status"] == "succeeded" and later.json()["attempt"] == 2


def test_a_live_attempt_keeps_its_lease_for_longer_than_the_lease(engine, short_lease, site) -> None:
    """The heartbeat: a page job slower than three leases is never taken over by a concurrent copy."""
    site.delays["/docs/faq"] = LEASE_S * 2.5
    source_id, payload = indexing_page_source(engine, site, "/docs/faq")
    message_id = new_id()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        first = pool.submit(deliver, engine.url, "ingest_pages", payload, message_id)
        copies = []
        while not first.done() and time.monotonic() - started < LEASE_S * 2.2:
            time.sleep(LEASE_S / 2)
            copies.append((time.monotonic() - started, deliver(engine.url, "ingest_pages", payload, message_id,
                                                               retried=1)))
        reply = first.result()
    assert reply.status_code == 200 and reply.json()["status"] == "succeeded", reply.text
    # Copies arriving once the first lease would long have run out still find it renewed.
    assert any(at > LEASE_S * 1.2 and outcome(copy) == "503 job_running" for at, copy in copies), copies
    assert {outcome(copy) for _, copy in copies} <= {"503 job_running", "duplicate"}
    assert job_row(engine, message_id)["attempts"] == 1
    assert site.hits["/docs/faq"] == 1  # the page was fetched once


def test_a_delivery_holds_no_connection_while_its_body_runs(engine, site, monkeypatch) -> None:
    """A delivery takes a pooled connection for each database step and holds none while its pages are fetched
    or embedded; the claim and the record take one each, briefly. Before, the claim's connection stayed out
    through the body and the body held its own throughout, so 16 page jobs delivered at once to one instance
    (bench/ingest.py at 100k chunks) left those past DB_POOL_SIZE/2 waiting DB_POOL_WAIT_S and answering 503
    `database_busy`. Here: two deliveries at once on a pool of ONE connection, each waiting 2 s on its page."""
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_POOL_WAIT_S", "1")
    clear_caches()
    sources = [indexing_page_source(engine, site, path) for path in ("/docs/install", "/docs/faq")]
    for path in ("/docs/install", "/docs/faq"):
        site.delays[path] = 2.0
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda pair: deliver(engine.url, "ingest_pages", pair[1], new_id()), sources))
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    for source_id, _ in sources:
        assert knowledge_state(engine, source_id)["documents"][0]["status"] == "ready"
    TALLY["deliveries sharing a small pool"] += 2


def test_a_vectorize_delivery_holds_no_connection_while_the_embeddings_api_answers(engine, embeddings_api,
                                                                                    monkeypatch) -> None:
    """The same for `vectorize`: it read its batch, embedded it and wrote the vectors on one connection, held
    through the embeddings request. Two deliveries at once on a pool of ONE connection, the API 2 s slow."""
    scopes = []
    for _ in range(2):
        workspace_id, _ = engine.workspace()
        with engine.db() as conn:
            load_corpus(conn, workspace_id, make_assistant(conn, workspace_id), embed=False)
        scopes.append({"workspace_id": workspace_id, "batch": 50})
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_POOL_WAIT_S", "1")
    clear_caches()
    embeddings_api.delay_s = 2.0
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda scope: deliver(engine.url, "vectorize", scope, new_id()), scopes))
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    with engine.db() as conn:
        left = conn.execute("SELECT count(*) AS n FROM chunks WHERE workspace_id = ANY(%s) AND embedding IS NULL",
                            ([s["workspace_id"] for s in scopes],)).fetchone()["n"]
    assert left == 0  # every chunk of both scopes has its vector
    TALLY["deliveries sharing a small pool"] += 2


def test_a_summary_delivery_holds_no_connection_while_the_model_writes(engine, openai_api, monkeypatch) -> None:
    """And for `summarize_conversation`, which held its connection through the model's answer."""
    from shared.dialog.conversations import HISTORY_LIMIT

    openai_api.reply = "They talked about anvils."
    payloads = []
    for _ in range(2):
        workspace_id, _ = engine.workspace()
        with engine.db() as conn:
            assistant_id = make_assistant(conn, workspace_id)
        conversation = long_conversation(engine, workspace_id, assistant_id, HISTORY_LIMIT)
        payloads.append({"workspace_id": workspace_id, "conversation_id": conversation})
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_POOL_WAIT_S", "1")
    clear_caches()
    openai_api.hang(2.0, times=2)  # each summary's answer starts after 2 s
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda p: deliver(engine.url, "summarize_conversation", p, new_id()), payloads))
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    with engine.db() as conn:
        summaries = conn.execute("SELECT summary FROM conversations WHERE id = ANY(%s)",
                                 ([p["conversation_id"] for p in payloads],)).fetchall()
    assert [s["summary"] for s in summaries] == ["They talked about anvils."] * 2
    TALLY["deliveries sharing a small pool"] += 2


def test_an_eval_batch_holds_no_connection_while_its_turns_run(engine, openai_api, monkeypatch) -> None:
    """And for `eval_batch`, which held one connection across all its cases' chat turns."""
    openai_api.reply = "Refunds take 14 days [1]."
    runs = [evaluation_run(engine) for _ in range(2)]
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_POOL_WAIT_S", "1")
    clear_caches()
    openai_api.hang(1.0, times=6)  # every case's answer starts after 1 s
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda r: deliver(engine.url, "eval_batch", {"workspace_id": r[0], "run_id": r[1],
                                                                            "case_ids": r[2]}, new_id()), runs))
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    for _, run_id, _ in runs:
        state = evaluation_state(engine, run_id)
        assert state["run"]["status"] == "succeeded", state
        assert [r["status"] for r in state["results"]] == ["done"] * 3
    TALLY["deliveries sharing a small pool"] += 2


# ---------------------------------------------------------------- a real kill


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_jobs_function(port: int) -> subprocess.Popen[bytes]:
    """api/jobs.py in a process of its own, as one function instance."""
    env = {**os.environ, "PUBLIC_URL": f"http://127.0.0.1:{port}", "JOB_LEASE_SECONDS": str(LEASE_S)}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.jobs:app", "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("the jobs function did not start")


@pytest.fixture
def real_backoff_qstash(engine: Any) -> Iterator[tuple[str, str]]:
    """A QStash stand-in with the real backoff (the session's is scaled down 100x, Retry-After included)."""
    from scripts.local_qstash import create_app

    token = "faults-token"
    app = create_app(engine.stack.local.queue_redis, token, os.environ["QSTASH_CURRENT_SIGNING_KEY"],
                     os.environ["QSTASH_NEXT_SIGNING_KEY"], backoff_scale=1.0, key_prefix="qstash-faults:")
    url, stop = serve_in_thread(app)
    yield url, token
    stop()


def test_a_job_killed_mid_run_is_run_again_by_the_next_retry(engine, short_lease, site, real_backoff_qstash) -> None:
    qstash_url, token = real_backoff_qstash
    site.delays["/pricing"] = 60  # the first attempt hangs fetching the page...
    source_id, payload = indexing_page_source(engine, site)
    port = free_port()
    function = start_jobs_function(port)
    try:
        # Retries every second, 30 of them: room for the restart on a busy machine (refused connections
        # count as failed deliveries, as on QStash).
        published = httpx.post(f"{qstash_url}/v2/publish/http://127.0.0.1:{port}/api/jobs/ingest_pages",
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                        "Upstash-Retries": "30", "Upstash-Retry-Delay": "1000"},
                               content=json.dumps(payload), timeout=10)
        message_id = published.json()["messageId"]
        deadline = time.monotonic() + 20
        while not (site.hits["/pricing"] and (job_row(engine, message_id) or {}).get("status") == "running"):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        function.kill()  # ...and its function is killed mid-run (SIGKILL: no cleanup, no finish)
        function.wait(10)
        killed_at = time.monotonic()
        site.delays.clear()
        function = start_jobs_function(port)  # the next deploy answers QStash's retries

        deadline = time.monotonic() + 60
        while (message := httpx.get(f"{qstash_url}/v2/messages/{message_id}", timeout=5,
                                    headers={"Authorization": f"Bearer {token}"}).json())["state"] not in (
                "DELIVERED", "FAILED"):
            assert time.monotonic() < deadline, message
            time.sleep(0.05)
        recovered_s = time.monotonic() - killed_at
    finally:
        function.kill()
        function.wait(10)

    assert message["state"] == "DELIVERED"
    row = job_row(engine, message_id)
    assert row["status"] == "succeeded" and row["attempts"] == 2, row  # the killed attempt, then the retry
    state = knowledge_state(engine, source_id)
    assert state["documents"][0]["status"] == "ready" and state["chunks"], state
    assert site.hits["/pricing"] == 2  # fetched by the killed attempt and once more by the retry
    TALLY["real kills recovered"] += 1
    TALLY["retries after the kill"] += message["retried"]
    TALLY["kill to recovered s"] = round(recovered_s, 1)  # a figure, not asserted
