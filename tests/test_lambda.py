"""AWS Lambda: `lambda_handler = Mangum(app)` answers API Gateway HTTP API (payload 2.0) events end to end."""

from __future__ import annotations

import asyncio
import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api import health, keys
from tests.fakes.chat_fixtures import make_assistant

SECURITY_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff",
                    "referrer-policy": "strict-origin-when-cross-origin"}


class LambdaContext:
    """The bits of the Lambda context object an app could look at."""
    function_name = "dialog-engine"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_event(method: str, path: str, *, key: str | None = None, body: Any = None,
               query: str = "") -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, as AWS documents it."""
    headers = {"host": "abc123.execute-api.eu-central-1.amazonaws.com", "user-agent": "curl/8.5.0",
               "x-forwarded-proto": "https", "x-forwarded-port": "443"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": headers, "isBase64Encoded": False,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": headers["host"],
            "domainPrefix": "abc123", "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default",
            "stage": "$default", "time": "10/Mar/2025:12:00:00 +0000", "timeEpoch": 1741608000000,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "curl/8.5.0"},
        },
    }
    if body is not None:
        headers["content-type"] = "application/json"
        event["body"] = json.dumps(body)
    return event


def invoke(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    # A Lambda invocation owns its thread; here another test's event loop may be running on this one.
    def in_fresh_thread() -> dict[str, Any]:
        asyncio.set_event_loop(asyncio.new_event_loop())  # as in Lambda's main thread
        return handler(event, LambdaContext())

    with ThreadPoolExecutor(max_workers=1) as pool:
        reply = pool.submit(in_fresh_thread).result()
    raw = reply.get("body", "")
    text = base64.b64decode(raw).decode() if reply.get("isBase64Encoded") else raw
    return reply["statusCode"], {k.lower(): v for k, v in reply.get("headers", {}).items()}, json.loads(text)


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name


def test_health_answers_through_lambda_handler(engine) -> None:
    _, admin = engine.workspace()
    status, headers, body = invoke(health.lambda_handler, http_event("GET", "/api/health", key=admin))
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert body["status"] in {"ok", "degraded"}
    assert body["checks"]["db"]["status"] == "ok" and body["checks"]["redis"]["status"] == "ok"
    assert_security_headers(headers)


def test_keys_create_and_list_through_lambda_handler(engine) -> None:
    workspace, admin = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    status, headers, created = invoke(keys.lambda_handler, http_event(
        "POST", "/api/keys", key=admin, body={"name": "widget", "scope": "chat", "assistant_ids": [assistant]}))
    assert status == 201, created
    assert created["key"].startswith("de_chat_") and created["scope"] == "chat"
    assert_security_headers(headers)

    status, headers, listed = invoke(keys.lambda_handler, http_event("GET", "/api/keys", key=admin))
    assert status == 200
    assert listed["count"] == 2 and {k["name"] for k in listed["data"]} >= {"widget"}
    assert all("key" not in k for k in listed["data"])
    assert_security_headers(headers)


def test_lambda_errors_keep_the_json_shape_and_headers(engine) -> None:
    status, headers, body = invoke(keys.lambda_handler, http_event("GET", "/api/keys"))
    assert status == 401
    assert set(body["error"]) == {"code", "message", "details"}
    assert_security_headers(headers)
    _, admin = engine.workspace()
    status, headers, body = invoke(keys.lambda_handler, http_event(
        "POST", "/api/keys", key=admin, body={"scope": "root", "surprise": 1}))
    assert status == 422 and body["error"]["code"] == "validation_error"
    assert_security_headers(headers)
