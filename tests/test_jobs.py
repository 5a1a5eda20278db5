"""The jobs route: only QStash-signed deliveries run, each message id once, failures retried and recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid

import jwt

from shared.core.queue import publish


def signature(key: str, url: str, body: bytes, *, expires_in: int = 300) -> str:
    now = int(time.time())
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()
    claims = {"iss": "Upstash", "sub": url, "iat": now, "nbf": now, "exp": now + expires_in,
              "jti": f"jwt_{uuid.uuid4().hex}", "body": digest}
    return jwt.encode(claims, key, algorithm="HS256")


def deliver(engine, body: bytes, sig: str | None, message_id: str = "msg_1"):
    headers = {"content-type": "application/json", "upstash-message-id": message_id, "upstash-retried": "0"}
    if sig:
        headers["upstash-signature"] = sig
    return engine.client().post("/api/jobs/ping", content=body, headers=headers)


def job_rows(engine) -> list[dict]:
    with engine.db() as conn:
        return conn.execute("SELECT name, status, attempts, error, message_id FROM jobs ORDER BY created_at").fetchall()


def test_missing_forged_and_expired_signatures_get_401_and_run_nothing(engine) -> None:
    url, body = f"{engine.url}/api/jobs/ping", b'{"echo": "x"}'
    cases = {
        "missing": None,
        "forged": signature("not-the-signing-key", url, body),
        "expired": signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], url, body, expires_in=-60),
        "other body": signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], url, b'{"echo": "y"}'),
        "other url": signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], f"{engine.url}/api/jobs/cleanup", body),
    }
    for case, sig in cases.items():
        reply = deliver(engine, body, sig)
        assert reply.status_code == 401, case
        assert reply.json()["error"]["code"] in {"missing_signature", "invalid_signature"}, case
    assert job_rows(engine) == []


def test_next_signing_key_is_accepted(engine) -> None:
    url, body = f"{engine.url}/api/jobs/ping", b'{"echo": "rotated"}'
    reply = deliver(engine, body, signature(os.environ["QSTASH_NEXT_SIGNING_KEY"], url, body))
    assert reply.status_code == 200 and reply.json()["result"]["pong"] == "rotated"


def test_one_message_id_delivered_twice_runs_once(engine) -> None:
    url, body = f"{engine.url}/api/jobs/ping", b'{"echo": "once"}'
    sig = signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], url, body)
    first, second = deliver(engine, body, sig, "msg_dup"), deliver(engine, body, sig, "msg_dup")
    assert first.json()["status"] == "succeeded"
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    rows = job_rows(engine)
    assert len(rows) == 1 and rows[0]["attempts"] == 1 and rows[0]["status"] == "succeeded"


def test_unknown_job_is_404_after_the_signature_check(engine) -> None:
    url, body = f"{engine.url}/api/jobs/nope", b"{}"
    reply = engine.client().post("/api/jobs/nope", content=body, headers={
        "upstash-signature": signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], url, body)})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "unknown_job"


def test_ping_through_qstash_runs_the_function(engine) -> None:
    message_id = publish("ping", {"echo": "hello"})
    engine.wait_for_queue()
    rows = job_rows(engine)
    assert [(r["name"], r["status"], r["message_id"]) for r in rows] == [("ping", "succeeded", message_id)]


def test_failing_job_is_retried_by_qstash_and_attempts_recorded(engine) -> None:
    publish("ping", {"echo": "flaky", "fail_attempts": 2}, retries=3)
    engine.wait_for_queue()
    (row,) = job_rows(engine)
    assert row["status"] == "succeeded" and row["attempts"] == 3 and row["error"] is None


def test_job_failing_every_time_ends_failed_with_its_error(engine) -> None:
    publish("ping", {"echo": "doomed", "fail_attempts": 99}, retries=2)
    engine.wait_for_queue()
    (row,) = job_rows(engine)
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "simulated failure 3 of 99" in row["error"]


def test_cron_needs_the_secret_and_queues_the_job(engine) -> None:
    assert engine.client().get("/api/cron/cleanup").status_code == 401
    wrong = engine.client(authorization="Bearer wrong").get("/api/cron/cleanup")
    assert wrong.status_code == 401
    ok = engine.client(authorization=f"Bearer {os.environ['CRON_SECRET']}").get("/api/cron/cleanup")
    assert ok.status_code == 200 and ok.json()["queued"] == "cleanup"
    engine.wait_for_queue()
    assert [(r["name"], r["status"]) for r in job_rows(engine)] == [("cleanup", "succeeded")]
    assert ok.json()["message_id"]


def deliver_to(engine, name: str, body: bytes, message_id: str):
    url = f"{engine.url}/api/jobs/{name}"
    return engine.client().post(f"/api/jobs/{name}", content=body, headers={
        "content-type": "application/json", "upstash-message-id": message_id,
        "upstash-signature": signature(os.environ["QSTASH_CURRENT_SIGNING_KEY"], url, body)})


def test_a_payload_that_does_not_fit_its_job_is_refused_once_naming_the_fields_and_runs_nothing(engine) -> None:
    workspace, _ = engine.workspace()
    cases = [("crawl_source", {"workspace_id": workspace, "source_id": "src_x"}, {"generation"}),
             ("crawl_source", {"workspace_id": workspace, "source_id": "src_x", "generation": "two"}, {"generation"}),
             ("ingest_pages", {"workspace_id": workspace, "source_id": "src_x", "generation": 1, "depth": -1},
              {"pages", "depth"}),
             ("vectorize", {"batch": 0, "source_id": 7}, {"batch", "source_id"}),
             ("ping", {"fail_attempts": "lots", "workspace_id": 5}, {"fail_attempts", "workspace_id"}),
             ("cleanup", [], {"(payload)"})]
    for number, (name, payload, fields) in enumerate(cases):
        reply = deliver_to(engine, name, json.dumps(payload).encode(), f"msg_bad_{number}")
        assert reply.status_code == 489 and reply.headers["upstash-nonretryable-error"] == "true", reply.text
        error = reply.json()["error"]
        assert error["code"] == "invalid_payload", (name, error)
        assert {e["field"] for e in error["details"]["errors"]} == fields, (name, error)
        assert all(field in error["message"] for field in fields)
        assert "lots" not in reply.text and "two" not in reply.text  # the rejected values are not echoed
    assert job_rows(engine) == []  # refused before anything was recorded or run


def test_a_job_queued_for_a_workspace_deleted_since_is_refused_once_not_retried(engine) -> None:
    """The claim's foreign key names no workspace any more: 489 (QStash stops retrying), nothing recorded or run."""
    reply = deliver_to(engine, "ping", json.dumps({"workspace_id": "ws_deleted_since"}).encode(), "msg_gone_ws")
    assert reply.status_code == 489 and reply.headers["upstash-nonretryable-error"] == "true", reply.text
    assert reply.json()["error"]["code"] == "job_not_retryable"
    assert job_rows(engine) == []


def test_fields_a_job_does_not_know_are_ignored_so_older_messages_still_run(engine) -> None:
    reply = deliver_to(engine, "ping", b'{"echo": "old", "cron": "x", "from_an_older_deploy": true}', "msg_old")
    assert reply.status_code == 200 and reply.json()["result"]["pong"] == "old"


def test_every_job_module_is_registered_and_shared_never_imports_functions() -> None:
    """Layering: functions/ -> shared/, never back. shared/core/jobs.py is handed functions.JOBS by api/jobs.py."""
    import ast
    from pathlib import Path

    from api.cron import CRON_JOBS
    from functions import JOBS
    from shared.core.jobs import JobPayload

    root = Path(__file__).resolve().parent.parent
    modules = {p.stem for p in (root / "functions").glob("*.py") if p.stem != "__init__"}
    assert set(JOBS) == modules
    assert set(CRON_JOBS.values()) <= set(JOBS)
    for name, job in JOBS.items():
        assert issubclass(job.payload, JobPayload) and callable(job.run), name
    for path in (root / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []
            assert not any(n == "functions" or n.startswith("functions.") for n in names), path
