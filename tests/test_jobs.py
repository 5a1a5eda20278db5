"""The jobs route: only QStash-signed deliveries run, each message id once, failures retried and recorded."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid

import jwt

from shared.queue import publish


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
