"""Limits everywhere: bodies, uploads, message length and count, pagination, field sizes. Each over-limit
input gets a clear 4xx in the error shape (never a 500, never a silent truncation) and stores nothing."""

from __future__ import annotations

import base64
import importlib
import json
from typing import Any

import pytest
from fastapi.routing import APIRoute

from scripts.router import function_names
from shared.core.pagination import encode_cursor
from tests.fakes.chat_fixtures import make_assistant
from tests.fakes.records import seed
from tests.plugins.stack import clear_caches


def routes() -> list[tuple[str, str, APIRoute]]:
    found = []
    for name in function_names():
        for route in importlib.import_module(f"api.{name}").app.routes:
            if isinstance(route, APIRoute):
                found += [(method, route.path, route) for method in sorted(route.methods - {"HEAD"})]
    return found


def concrete(path: str) -> str:
    return path.replace("{version}", "1").replace("{name}", "ping").format_map(_AnyId())


class _AnyId(dict):
    def __missing__(self, key: str) -> str:
        return "x_1"


def error_code(reply: Any) -> str | None:
    body = reply.json()["error"]
    return body.get("code") if isinstance(body, dict) else None


def rows(engine: Any, table: str) -> int:
    with engine.db() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


@pytest.fixture
def small_limits(engine: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Smaller limits, so the over-limit bodies of these tests stay small and fast."""
    limits = {"MAX_BODY_BYTES": 20_000, "MAX_UPLOAD_BYTES": 50_000, "MAX_MESSAGE_CHARS": 500}
    for name, value in limits.items():
        monkeypatch.setenv(name, str(value))
    clear_caches()
    return limits


# Routes that read their body themselves (no pydantic body parameter).
READ_THEIR_BODY = {("POST", "/api/chat"), ("POST", "/api/jobs/{name}")}


def test_every_body_over_the_limit_gets_413(engine: Any, small_limits: dict[str, int]) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    limit = small_limits["MAX_BODY_BYTES"]
    big = b'{"name": "' + b"a" * limit + b'"}'
    own_limits = {("POST", "/api/sources"), ("POST", "/api/webhooks/firecrawl"),
                  ("POST", "/api/evals/sets/{set_id}/import")}
    checked = []
    for method, path, route in routes():
        if method not in ("POST", "PUT", "PATCH") or (method, path) in own_limits:
            continue
        reply = client.request(method, concrete(path), content=big, headers={"content-type": "application/json"})
        assert reply.status_code == 413, (method, path, reply.status_code, reply.text)
        assert error_code(reply) == "payload_too_large" and reply.json()["error"]["details"]["limit_bytes"] == limit
        checked.append(f"{method} {path}")
        if route.body_field is None and (method, path) not in READ_THEIR_BODY:
            continue  # a route that takes no body never reads one: a streamed body is simply not consumed
        # Without a Content-Length (chunked), the limit holds as the body streams in.
        streamed = client.request(method, concrete(path), content=iter([big[:10_000], big[10_000:]]),
                                  headers={"content-type": "application/json"})
        assert streamed.status_code == 413, ("streamed", method, path, streamed.status_code, streamed.text)
    assert len(checked) >= 12, checked
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM templates WHERE workspace_id IS NOT NULL").fetchone()["n"] == 0
    # Other routes of the sources function keep the ordinary limit; only adding a source may send more.
    patch = client.patch("/api/sources/src_1", content=big, headers={"content-type": "application/json"})
    assert patch.status_code == 413 and error_code(patch) == "payload_too_large"


def test_upload_and_text_sources_over_their_limit_get_413(engine: Any, small_limits: dict[str, int]) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    client = engine.client(key)
    limit = small_limits["MAX_UPLOAD_BYTES"]
    fits = client.post("/api/sources", data={"assistant_id": assistant},
                       files={"file": ("notes.md", b"# Notes\n\n" + b"word " * 9_000, "text/markdown")})
    assert fits.status_code == 202, fits.text  # 45 KB: more than MAX_BODY_BYTES, less than MAX_UPLOAD_BYTES
    engine.wait_for_queue()
    before = rows(engine, "sources")
    upload = client.post("/api/sources", data={"assistant_id": assistant},
                         files={"file": ("big.md", b"x" * (limit + 1), "text/markdown")})
    assert upload.status_code == 413 and error_code(upload) == "payload_too_large", upload.text
    assert upload.json()["error"]["details"]["limit_bytes"] == limit
    text = client.post("/api/sources", json={"assistant_id": assistant, "kind": "text", "content": "y" * (limit + 1)})
    assert text.status_code == 413, text.text
    streamed = client.post("/api/sources", content=iter([b"z" * 100_000] * 2), headers={"content-type": "text/plain"})
    assert streamed.status_code == 413, streamed.text
    assert rows(engine, "sources") == before


def test_webhook_body_limit(engine: Any) -> None:
    reply = engine.client().post("/api/webhooks/firecrawl", content=b"{" + b" " * 20_000_000 + b"}",
                                 headers={"content-type": "application/json"})
    assert reply.status_code == 413 and error_code(reply) == "payload_too_large"


def test_message_longer_than_the_limit_gets_a_clear_4xx_on_every_chat_face(engine: Any,
                                                                         small_limits: dict[str, int]) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    client = engine.client(key)
    limit = small_limits["MAX_MESSAGE_CHARS"]
    long, fits = "ä" * (limit + 1), "ä" * limit  # characters, not bytes
    native = client.post("/api/chat", json={"assistant_id": assistant, "message": long, "stream": False})
    assert native.status_code == 413 and error_code(native) == "message_too_long", native.text
    assert native.json()["error"]["details"]["max_chars"] == limit
    assert client.post("/api/chat", json={"assistant_id": assistant, "message": fits,
                                          "stream": False}).status_code == 200
    ui = client.post("/api/chat", params={"assistant_id": assistant}, json={
        "id": "chat-long", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": long}]}]})
    assert ui.status_code == 413 and error_code(ui) == "message_too_long", ui.text
    openai = client.post("/api/v1/chat/completions", json={"model": assistant,
                                                           "messages": [{"role": "user", "content": long}]})
    assert openai.status_code == 400 and openai.json()["error"]["code"] == "message_too_long", openai.text
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM messages WHERE length(content) > %s",
                            (limit,)).fetchone()["n"] == 0


MANY = 5_000  # messages in one request: far more than any real conversation sends at once


@pytest.mark.parametrize("face", ["openai-count", "usechat-count", "openai-history-length"])
def test_too_many_or_too_long_messages_in_one_request_get_a_clear_4xx(engine: Any, face: str) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    client = engine.client(key)
    if face == "openai-count":
        history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(MANY + 1)]
        reply = client.post("/api/v1/chat/completions", json={"model": assistant, "messages": history})
    elif face == "usechat-count":
        history = [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant",
                    "parts": [{"type": "text", "text": "hi"}]} for i in range(MANY + 1)]
        reply = client.post("/api/chat", params={"assistant_id": assistant}, json={"id": "c1", "messages": history})
    else:  # an earlier message far over the limit
        history = [{"role": "user", "content": "x" * 400_000}, {"role": "assistant", "content": "ok"},
                   {"role": "user", "content": "hi"}]
        reply = client.post("/api/v1/chat/completions", json={"model": assistant, "messages": history})
    assert reply.status_code in (400, 413, 422), (reply.status_code, reply.text[:300])


# Forged cursors: well-formed base64 JSON whose values have the wrong type or range for the sort key.
FORGED_CURSORS = [encode_cursor("not a time", "x"), encode_cursor(10**30, "x"), encode_cursor("99999-01-01", "x"),
                  encode_cursor("2020-01-01T00:00:00Z", 5), encode_cursor("\x00", "\x00"), encode_cursor("x"),
                  encode_cursor(2**63), encode_cursor(True), encode_cursor("\x00"), encode_cursor(None),
                  "not-a-cursor", "W10", "%00", "c" * 600]


def base64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_pagination_caps_and_forged_cursors_on_every_list_route(engine: Any) -> None:
    rec = seed(engine)
    client = engine.client(rec.admin_key)
    ids = {"source_id": rec.source_id, "conversation_id": rec.conversation_id}
    paged = [(m, p, r) for m, p, r in routes()
             if m == "GET" and any(q.name == "limit" for q in r.dependant.query_params)]
    assert len(paged) >= 6, [p for _, p, _ in paged]
    for _, path, route in paged:
        url = path.format(**ids)
        assert client.get(url).status_code == 200, url
        for bad in ("101", "0", "-1", "1e3", "abc", "9" * 40):
            reply = client.get(url, params={"limit": bad})
            assert reply.status_code == 422 and error_code(reply) == "validation_error", (path, bad, reply.text)
            assert reply.json()["error"]["details"][0]["field"].endswith("limit"), reply.text
        if any(q.name == "cursor" for q in route.dependant.query_params):
            for bad in FORGED_CURSORS:
                reply = client.get(url, params={"cursor": bad})
                # ["x"] is a fine cursor where the sort key is one text (pages by URL): it just finds nothing.
                assert reply.status_code in (200, 422), (path, bad, reply.status_code, reply.text)
                if reply.status_code == 422:
                    assert reply.json()["error"]["details"][0]["field"].endswith("cursor"), (path, bad, reply.text)
                else:
                    assert reply.json()["data"] == [] and len(json.loads(base64url(bad))) == 1, (path, bad)
        assert client.get(url, params={"limit": "100"}).status_code == 200
    offset = client.get("/api/conversations", params={"offset": "100001"})
    assert offset.status_code == 422
    both = client.get("/api/conversations", params={"offset": "5", "cursor": "W10"})
    assert both.status_code == 422


def test_cursors_this_api_returns_page_through_everything(engine: Any) -> None:
    rec = seed(engine)
    client = engine.client(rec.admin_key)
    for _ in range(3):
        assert client.post("/api/assistants", json={"name": "more"}).status_code == 201
    seen, cursor = [], None
    while True:
        page = client.get("/api/assistants", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 4
    audit = client.get("/api/audit", params={"limit": 2}).json()
    older = client.get("/api/audit", params={"limit": 2, "cursor": audit["next_cursor"]}).json()
    assert older["data"] and older["data"][0]["id"] < audit["data"][-1]["id"]


# (method, path, body or query, status, code): one over-limit or malformed value each.
FIELD_LIMITS = [
    ("POST", "/api/templates", {"name": "n" * 201}, 422, "validation_error"),
    ("POST", "/api/templates", {"name": "t", "system_prompt": "s" * 20_001}, 422, "validation_error"),
    ("POST", "/api/templates", {"name": "t", "suggested_questions": ["q"] * 11}, 422, "validation_error"),
    ("POST", "/api/templates", {"name": "t", "max_output_tokens": 10**20}, 422, "validation_error"),
    ("POST", "/api/templates", {"name": "t", "temperature": 2.01}, 422, "validation_error"),
    ("POST", "/api/templates", {"name": "nul\x00"}, 422, "nul_character"),
    ("POST", "/api/assistants", {"name": "a", "allowed_origins": ["https://a.example"] * 51}, 422, "validation_error"),
    ("POST", "/api/assistants", {"name": "a", "template_id": "t" * 101}, 422, "validation_error"),
    ("POST", "/api/assistants", {"name": "a", "overrides": {"temperature": 9}}, 422, "validation_error"),
    ("POST", "/api/assistants", {"name": "a\x00"}, 422, "nul_character"),
    ("POST", "/api/keys", {"name": "k" * 201}, 422, "validation_error"),
    ("POST", "/api/keys", {"allowed_origins": ["https://a.example"] * 51}, 422, "validation_error"),
    ("POST", "/api/keys", {"scope": "root"}, 422, "validation_error"),
    ("POST", "/api/feedback", {"message_id": "m", "rating": "up", "comment": "c" * 4001}, 422, "validation_error"),
    ("POST", "/api/feedback", {"message_id": "m" * 101, "rating": "up"}, 422, "validation_error"),
    ("POST", "/api/feedback", {"message_id": "m", "rating": 5}, 422, "validation_error"),
    ("POST", "/api/search", {"assistant_id": "a", "query": "q" * 1001}, 422, "validation_error"),
    ("POST", "/api/search", {"assistant_id": "a", "query": "q", "top_k": 51}, 422, "validation_error"),
    ("POST", "/api/sources", {"assistant_id": "a", "kind": "site", "url": "https://a.example/" + "p" * 2048},
     422, "validation_error"),
    ("POST", "/api/sources", {"assistant_id": "a", "kind": "site", "limit": 10_001}, 422, "validation_error"),
    ("POST", "/api/sources", {"assistant_id": "a", "kind": "site", "include_paths": ["x"] * 51},
     422, "validation_error"),
    ("POST", "/api/chat", {"assistant_id": "a" * 101, "message": "hi"}, 422, "validation_error"),
    ("POST", "/api/chat", {"assistant_id": "a", "message": "hi", "user_id": "u" * 201}, 422, "validation_error"),
    ("POST", "/api/chat", {"assistant_id": "a/../b", "message": "hi"}, 422, "validation_error"),
    ("GET", "/api/templates/default/versions/2147483648", None, 422, "validation_error"),
    ("GET", "/api/templates/default/versions/0", None, 422, "validation_error"),
    ("GET", "/api/assistants/a%00b", None, 422, "nul_character"),
    ("GET", "/api/conversations", {"user_id": "u\x00"}, 422, "nul_character"),
    ("GET", "/api/conversations", {"since": "yesterday-ish"}, 422, "validation_error"),
    ("GET", "/api/metrics/usage", {"days": "367"}, 422, "validation_error"),
    ("GET", "/api/metrics", {"name": "x", "start": "-3650d", "bucket": "30s"}, 400, "too_many_buckets"),
    ("GET", "/api/metrics", {"name": "x", "bucket": "0s"}, 400, "invalid_duration"),
    ("GET", "/api/audit", {"since": "not a date"}, 422, "validation_error"),
    ("GET", "/api/metrics", {"start": "-99999999999w"}, 400, "invalid_time"),
    ("GET", "/api/metrics", {"end": "0001-01-01"}, 400, "invalid_time"),
    ("GET", "/api/metrics", {"name": "x", "bucket": "99999999999w"}, 400, "invalid_duration"),
    ("GET", "/api/metrics", {"name": "x", "bucket": "0.0000001s"}, 400, "invalid_duration"),
]


def test_field_limits_and_malformed_values_get_a_clear_4xx(engine: Any) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    for method, path, data, status, code in FIELD_LIMITS:
        reply = client.request(method, path, json=data) if method != "GET" else client.get(path, params=data)
        case = f"{method} {path} {str(data)[:60]}: {reply.status_code} {reply.text[:300]}"
        assert reply.status_code == status, case
        assert error_code(reply) == code, case
        assert "Traceback" not in reply.text and "psycopg" not in reply.text, case
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM templates WHERE workspace_id IS NOT NULL").fetchone()["n"] == 0


def test_wrong_content_types_and_broken_bodies_get_a_clear_4xx(engine: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    client = engine.client(key)
    cases = [
        ("/api/keys", b'{"scope": "chat"}', "text/plain", (415,)),
        ("/api/keys", b"scope=chat", "application/x-www-form-urlencoded", (415,)),
        ("/api/templates", b"name=x", "multipart/form-data; boundary=x", (415,)),
        ("/api/keys", b'{"scope": "chat"', "application/json", (400,)),
        ("/api/keys", b"\xff\xfe", "application/json", (400,)),
        ("/api/keys", b"[]", "application/json", (422,)),
        ("/api/chat", b'{"assistant_id": "a", "message": "hi"', "application/json", (400,)),
        ("/api/chat", b"[1, 2]", "application/json", (422,)),
        ("/api/chat", b'"just a string"', "application/json", (422,)),
        ("/api/sources", b"assistant_id=x", "application/x-www-form-urlencoded", (422,)),
        ("/api/sources", f'{{"assistant_id": "{assistant}", "kind": "text"'.encode(), "application/json", (400, 422)),
        ("/api/search", b"null", "application/json", (422,)),
        ("/api/templates", b'{"name": "t", "temperature": 1e999}', "application/json", (422,)),
        ("/api/templates", b'{"name": "t", "max_output_tokens": 1' + b"0" * 5000 + b"}", "application/json",
         (400, 422)),
    ]
    for path, body, content_type, statuses in cases:
        reply = client.post(path, content=body, headers={"content-type": content_type})
        assert reply.status_code in statuses, (path, body, content_type, reply.status_code, reply.text)
        assert set(reply.json()["error"]) == {"code", "message", "details"}, reply.text
    upload = client.post("/api/sources", data={"assistant_id": assistant},
                         files={"file": ("tool.exe", b"MZ\x90\x00binary", "application/octet-stream")})
    assert upload.status_code == 415 and error_code(upload) == "unsupported_file_type", upload.text


@pytest.mark.parametrize("escape,code", [("\\u0000", "nul_character"), ("\\ud800", "invalid_unicode")])
def test_text_postgres_cannot_store_gets_422_wherever_it_is_sent(engine: Any, escape: str, code: str) -> None:
    """JSON may carry NUL and unpaired surrogates (\\ud800); PostgreSQL text can hold neither."""
    rec = seed(engine)
    client = engine.client(rec.admin_key)
    chat = {"assistant_id": rec.assistant_id, "message": "m", "stream": False}
    bodies = [  # "BAD" becomes the escape
        ("POST", "/api/templates", {"name": "tBAD"}),
        ("PATCH", f"/api/templates/{rec.template_id}", {"greeting": "hi BAD"}),
        ("POST", "/api/assistants", {"name": "aBAD"}),
        ("PATCH", f"/api/assistants/{rec.assistant_id}", {"name": "aBAD"}),
        ("POST", "/api/keys", {"name": "kBAD", "scope": "admin"}),
        ("POST", "/api/feedback", {"message_id": rec.message_id, "rating": "up", "comment": "cBAD"}),
        ("POST", "/api/sources", {"assistant_id": rec.assistant_id, "kind": "text", "content": "cBAD"}),
        ("PATCH", f"/api/sources/{rec.source_id}", {"title": "tBAD"}),
        ("POST", "/api/search", {"assistant_id": rec.assistant_id, "query": "qBAD"}),
        ("POST", "/api/chat", {**chat, "message": "mBAD"}),
        ("POST", "/api/chat", {**chat, "user_id": "uBAD"}),
        ("POST", "/api/chat", {**chat, "metadata": {"k": "vBAD"}}),
    ]
    for method, path, data in bodies:
        body = json.dumps(data).replace("BAD", escape).encode()
        reply = client.request(method, path, content=body, headers={"content-type": "application/json"})
        if path == "/api/search" and reply.status_code == 200:
            assert reply.json()["results"] == []  # the query's words are searched for; nothing is stored
            continue
        assert reply.status_code in (400, 422), (method, path, body, reply.status_code, reply.text)
        if reply.status_code == 422 and error_code(reply) not in ("validation_error",):
            assert error_code(reply) == code, (method, path, reply.text)
    cursor = base64.urlsafe_b64encode(f'["x{escape}"]'.encode()).decode().rstrip("=")
    reply = client.get(f"/api/sources/{rec.source_id}/pages", params={"cursor": cursor})
    assert reply.status_code == 422 and reply.json()["error"]["details"][0]["field"] == "cursor", reply.text
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM messages WHERE content LIKE 'm%'").fetchone()["n"] == 0
