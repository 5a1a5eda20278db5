"""Every response carries X-Request-Id; the engine's log lines are JSON objects carrying the same id (LOG_LEVEL
decides which lines), including the line of an unexpected error and the 500 it answered; a caller's well-formed
id (X-Request-Id, Vercel's x-vercel-id) is kept, anything else replaced."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

GENERATED = re.compile(r"[0-9a-f]{32}")


def test_every_response_carries_a_request_id(engine: Any) -> None:
    workspace, key = engine.workspace()
    admin, anonymous = engine.client(key), engine.client()
    replies = [admin.get("/api/keys"),                                     # 200
               anonymous.get("/api/keys"),                                 # 401 (no key)
               admin.get("/api/no-such-route"),                            # 404
               admin.post("/api/assistants", content=b"x" * 2_000_000,     # 413 before the route reads it
                          headers={"content-type": "application/json"}),
               anonymous.options("/api/chat", headers={"origin": "https://shop.example.org",  # CORS preflight
                                                       "access-control-request-method": "POST"})]
    ids = [reply.headers.get("x-request-id") for reply in replies]
    assert [reply.status_code for reply in replies] == [200, 401, 404, 413, 200]
    assert all(rid and GENERATED.fullmatch(rid) for rid in ids), ids
    assert len(set(ids)) == len(ids)  # one per request


@pytest.mark.parametrize(("headers", "kept"), [
    ({"X-Request-Id": "req-2f1c9a7e-proxy"}, "req-2f1c9a7e-proxy"),
    ({"x-vercel-id": "fra1::iad1::8tmcd-1767000000000-a1b2c3d4e5f6"}, "fra1::iad1::8tmcd-1767000000000-a1b2c3d4e5f6"),
    ({"X-Request-Id": "req-from-client-01", "x-vercel-id": "fra1::iad1::abc-1"}, "req-from-client-01"),
    ({"X-Request-Id": "bad id with spaces"}, None),
    ({"X-Request-Id": "x" * 200}, None),                                # too long for a log line's key
    ({"X-Request-Id": 'quote"injection{}'}, None),
    ({"X-Request-Id": "short"}, None),
])
def test_a_well_formed_incoming_id_is_kept_and_anything_else_replaced(engine: Any, headers, kept) -> None:
    reply = engine.client().get("/api/health", headers=headers)
    assert reply.status_code == 200
    rid = reply.headers["x-request-id"]
    assert rid == kept if kept else GENERATED.fullmatch(rid), rid


# A function of ours that logs during a request and fails in another, run as Vercel runs it: nothing configures
# logging, so the engine's own handler writes stderr.
LOG_APP = """
import json, logging, sys
import httpx
from scripts._serve import serve_in_thread
from shared.core.http import create_app

app = create_app("probe")
log = logging.getLogger("dialog_engine.probe")

@app.get("/api/probe")
def probe():
    log.info("probe-info for this request")
    log.debug("probe-debug for this request")
    return {"ok": True}

@app.get("/api/boom")
def boom():
    raise RuntimeError("probe-boom")

url, stop = serve_in_thread(app)
replies = [httpx.get(url + "/api/probe"), httpx.get(url + "/api/boom", headers={"X-Request-Id": "caller-id-0042"})]
log.warning("probe-outside any request")
stop()
print(json.dumps([[r.status_code, r.headers.get("x-request-id")] for r in replies]))
"""


def run_log_app(**env: str) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    clean = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "LOG_FORMAT", "SENTRY_DSN")}
    run = subprocess.run([sys.executable, "-c", LOG_APP], cwd=ROOT, env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("{")]
    return json.loads(run.stdout.strip().splitlines()[-1]), [json.loads(line) for line in lines]


def test_log_lines_are_json_with_the_request_id_the_response_carries() -> None:
    replies, lines = run_log_app(LOG_LEVEL="INFO")
    (ok_status, ok_id), (boom_status, boom_id) = replies
    assert ok_status == 200 and GENERATED.fullmatch(ok_id)
    assert boom_status == 500 and boom_id == "caller-id-0042"  # the 500 too, with the caller's id
    by_message = {line["message"]: line for line in lines}
    info = by_message["probe-info for this request"]
    assert info["level"] == "INFO" and info["logger"] == "dialog_engine.probe" and info["request_id"] == ok_id
    assert "probe-debug for this request" not in by_message  # LOG_LEVEL=INFO
    failure = by_message["unhandled error on GET /api/boom"]
    assert failure["level"] == "ERROR" and failure["request_id"] == "caller-id-0042"
    assert "RuntimeError: probe-boom" in failure["exception"]
    assert "request_id" not in by_message["probe-outside any request"]
    assert {"time", "level", "logger", "message"} <= set(info)


def test_log_level_and_text_format_are_honoured() -> None:
    _, lines = run_log_app(LOG_LEVEL="DEBUG")
    assert "probe-debug for this request" in {line["message"] for line in lines}
    clean = {k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "SENTRY_DSN")}
    run = subprocess.run([sys.executable, "-c", LOG_APP], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=False, env={**clean, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text"})
    assert run.returncode == 0, run.stderr
    assert "probe-info" not in run.stderr
    assert "ERROR dialog_engine: unhandled error on GET /api/boom [caller-id-0042]" in run.stderr, run.stderr
