"""Sentry gets errors only when SENTRY_DSN is set, and neither its events nor our logs carry secrets."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from scripts._serve import serve_in_thread
from tests.conftest import ROOT
from tests.fakes import sentry_server

ADMIN_KEY = "de_admin_Zq3hX9v2LmN8pQ4rT6wY1uI0oP5aS7dF"
CHAT_KEY = "de_chat_Kp2mN4bV6cX8zL0jH3gF5dS7aQ9wE1rT"
DB_PASSWORD = "Db-Pa55word-9f8e7d6c"
UPSTASH_TOKEN = "localUpstashToken_w8Z3kJ5nR2"  # random-looking: only the settings-value scrubbing catches it
OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz012345"
QSTASH_TOKEN = "eyJVc2VySUQiOiJhYmMiLCJQYXNzd29yZCI6InNlY3JldCJ9"
SECRETS = [ADMIN_KEY, CHAT_KEY, DB_PASSWORD, UPSTASH_TOKEN, OPENAI_KEY, QSTASH_TOKEN]

# A function of ours whose route fails with secrets in its message, its locals and its request headers.
APP_SCRIPT = """
import json, sys
import httpx
from fastapi import Request
from scripts._serve import serve_in_thread
from shared.core.http import create_app
from shared.core.settings import get_settings

app = create_app("boom")

@app.get("/api/boom")
def boom(request: Request):
    authorization = request.headers["authorization"]
    settings = get_settings()
    raise RuntimeError(f"could not reach {settings.database_url} with {authorization} and {settings.openai_api_key}")

url, stop = serve_in_thread(app)
reply = httpx.get(url + "/api/boom", headers=json.loads(sys.argv[1]))
if "sentry_sdk" in sys.modules:
    import sentry_sdk
    sentry_sdk.flush(timeout=5)
stop()
print(json.dumps({"status": reply.status_code, "body": reply.text, "request_id": reply.headers.get("x-request-id"),
                  "loaded": sorted(m for m in ("sentry_sdk", "openai", "anthropic") if m in sys.modules)}))
"""
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Api-Key": CHAT_KEY, "Upstash-Signature": QSTASH_TOKEN}


def run_failing_app(sentry_dsn: str | None) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    env.update(DATABASE_URL=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:1/app", UPSTASH_REDIS_REST_TOKEN=UPSTASH_TOKEN,
               OPENAI_API_KEY=OPENAI_KEY, QSTASH_TOKEN=QSTASH_TOKEN, SENTRY_TRACES_SAMPLE_RATE="1.0")
    if sentry_dsn:
        env["SENTRY_DSN"] = sentry_dsn
    result = subprocess.run([sys.executable, "-c", APP_SCRIPT, json.dumps(HEADERS)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_without_sentry_dsn_sentry_is_never_loaded_and_nothing_is_sent() -> None:
    received: list[bytes] = []
    _, stop = serve_in_thread(sentry_server.create_app(received))
    try:
        outcome, stderr = run_failing_app(sentry_dsn=None)
    finally:
        stop()
    assert outcome["status"] == 500 and outcome["loaded"] == []
    assert received == []
    assert "RuntimeError" in stderr  # the error is still logged ...
    assert not [s for s in SECRETS if s in stderr]  # ... without its secrets


def test_with_sentry_dsn_errors_reach_sentry_without_secrets() -> None:
    received: list[bytes] = []
    url, stop = serve_in_thread(sentry_server.create_app(received))
    try:
        outcome, stderr = run_failing_app(sentry_dsn=url.replace("http://", "http://public@") + "/1")
        deadline = time.monotonic() + 5
        while not any(b'"RuntimeError"' in body for body in received) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert outcome["status"] == 500
    assert outcome["loaded"] == ["sentry_sdk"]  # and not openai or anthropic: no auto-enabled integrations
    assert not [s for s in SECRETS if s in outcome["body"]]
    everything = b"\n".join(received).decode()
    assert '"RuntimeError"' in everything, "no error event reached the fake Sentry"
    assert '"transaction"' in everything  # traces too (SENTRY_TRACES_SAMPLE_RATE=1.0)
    assert "[Filtered]" in everything and "could not reach postgresql://app:[Filtered]@" in everything
    assert [s for s in SECRETS if s in everything] == []
    assert not [s for s in SECRETS if s in stderr]
    # The error event is tagged with the request id the caller got back (X-Request-Id) and the logs carry.
    error_events = [json.loads(line) for body in received for line in body.splitlines()
                    if line.startswith(b"{") and b'"RuntimeError"' in line and b'"exception"' in line]
    assert outcome["request_id"] and error_events
    assert {event.get("tags", {}).get("request_id") for event in error_events} == {outcome["request_id"]}


def test_log_records_are_scrubbed_wherever_they_are_handled(caplog) -> None:
    from shared.core.http import create_app

    create_app("logs")  # installs the scrubber (once, however many apps a process builds)
    create_app("more logs")
    log = logging.getLogger("dialog_engine.some.module")
    with caplog.at_level(logging.INFO):
        log.info("calling with key %s and %s", ADMIN_KEY, CHAT_KEY)
        log.warning("db postgresql://app:%s@db.example.com:5432/app, openai %s", DB_PASSWORD, OPENAI_KEY)
        log.info("headers {'authorization': 'Bearer %s'} token=%s", QSTASH_TOKEN, "abc123secretvalue")
        try:
            raise ValueError(f"bad key {ADMIN_KEY}")
        except ValueError:
            log.exception("failed")
        log.info("tokens_in=%d route=%s", 42, "/api/chat")
    text = caplog.text
    assert [s for s in SECRETS if s in text] == [] and "abc123secretvalue" not in text
    assert "de_admin_[Filtered]" in text and "postgresql://app:[Filtered]@db.example.com" in text
    assert "ValueError: bad key de_admin_[Filtered]" in text  # the traceback too
    assert "tokens_in=42 route=/api/chat" in text  # ordinary records are left alone
    assert caplog.records[-1].msg == "tokens_in=%d route=%s"  # ... with their template (Sentry groups by it)


def test_every_secret_setting_is_scrubbed_from_logs_auth_secret_included(caplog, monkeypatch) -> None:
    from shared.core.http import create_app
    from shared.core.settings import get_settings

    auth_secret, redis_password = "AuthJs5Secret_q8Wm2Lx7Vn4", "RedisPass_k3Jd9Qw2"  # random-looking: no pattern
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/unused")
    monkeypatch.setenv("AUTH_SECRET", auth_secret)
    monkeypatch.setenv("REDIS_URL", f"redis://default:{redis_password}@cache.internal:6379/0")
    get_settings.cache_clear()
    try:
        create_app("logs")
        with caplog.at_level(logging.INFO):
            logging.getLogger("dialog_engine.session").info("verifying with %s", auth_secret)
            logging.getLogger("dialog_engine.kv").info("password was %s", redis_password)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert auth_secret not in caplog.text and redis_password not in caplog.text
    assert caplog.text.count("[Filtered]") == 2
    # Derived from the settings' names: each of these is scrubbed without being listed by hand.
    from shared.core.observability import secret_settings

    assert {"auth_secret", "nextauth_secret", "cron_secret", "firecrawl_webhook_secret", "qstash_token",
            "qstash_current_signing_key", "upstash_redis_rest_token", "openai_api_key",
            "backup_identity"} <= set(secret_settings())
