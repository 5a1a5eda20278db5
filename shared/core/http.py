"""The FastAPI app every api/ file builds: error shape, security headers, body limit, request logging."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.core.errors import AppError, error_body
from shared.core.logs import apply_log_level
from shared.core.metrics import MetricsMiddleware
from shared.core.observability import init_sentry, install_log_scrubber
from shared.core.request_id import RequestIdMiddleware
from shared.core.settings import SettingsError, get_settings

log = logging.getLogger("dialog_engine")

SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
              422: "validation_error", 429: "rate_limited", 503: "service_unavailable"}

BodyLimit = int | Callable[[Scope], int] | None  # bytes, a function of the request, or None = MAX_BODY_BYTES


def create_app(title: str, *, description: str = "", max_body_bytes: BodyLimit = None,
               on_start: Callable[[], object] | None = None) -> FastAPI:
    """A FastAPI app with our error handlers and middleware; `max_body_bytes` (bytes, or a function of the
    request's ASGI scope) overrides the MAX_BODY_BYTES setting. `on_start` runs at the ASGI lifespan's
    startup (Vercel's runtime runs it when an instance starts); it must return at once."""
    app = FastAPI(title=f"Dialog Engine: {title}", description=description, version="1.0.0",
                  docs_url=None, redoc_url=None, lifespan=_lifespan(on_start) if on_start else None)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SettingsError, _settings_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)  # outside ours: times them too; flushes after the last byte
    app.add_middleware(WidgetCorsMiddleware)  # outermost of ours: a preflight needs no key, body or metrics
    _outermost(app, RequestIdMiddleware)
    _document_errors(app)
    install_log_scrubber()
    apply_log_level()
    init_sentry()
    return app


def _lifespan(on_start: Callable[[], object]) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        on_start()
        yield

    return lifespan


def _outermost(app: FastAPI, middleware: Callable[[ASGIApp], ASGIApp]) -> None:
    """Wrap even Starlette's ServerErrorMiddleware (add_middleware puts ours inside it): a 500 and the log line
    of its exception, made there, are then inside the request too (X-Request-Id, request_id)."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: middleware(build())  # type: ignore[method-assign]


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error", "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "details"], "additionalProperties": False,
        "properties": {"code": {"type": "string", "description": "Stable, machine-readable"},
                       "message": {"type": "string", "description": "For people"},
                       "details": {"description": "Per-field problems, limits, ...; null when there is nothing"}}}}}


def _document_errors(app: FastAPI) -> None:
    """OpenAPI names our error shape for every 4xx (FastAPI's default 422 model is not what we send)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        # An app that answers in another shape (the OpenAI face) installs its own handler: don't claim ours.
        ours = app.exception_handlers.get(AppError) is _app_error
        if ours:
            schemas["Error"] = ERROR_SCHEMA
        error = {"description": "Error", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
        for operation in (op for ops in schema.get("paths", {}).values() for op in ops.values()):
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if ours:
                responses["4XX"] = error
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def json_error(status: int, code: str, message: str, details: Any = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return json_error(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return json_error(400, "invalid_json", "The request body is not valid JSON.",
                          [{"position": e.get("loc", [None, None])[-1], "problem": e.get("ctx", {}).get("error")}
                           for e in errors if e.get("type") == "json_invalid"])
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and "json" not in content_type and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        # A JSON route sent a form (curl -d) or plain text: FastAPI left it unparsed; say what it wants.
        return json_error(415, "unsupported_media_type", "Send the body as JSON with 'Content-Type: application/json'.",
                          {"content_type": content_type})
    details = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "problem": e.get("msg"), "type": e.get("type")} for e in errors]
    fields = ", ".join(d["field"] or "body" for d in details[:5])
    return json_error(422, "validation_error", f"Invalid request: check {fields}.", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route for {request.method} {request.url.path}."
    return json_error(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _settings_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("configuration error: %s", exc)
    return json_error(503, "misconfigured", str(exc))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Never echo the exception: it may carry a connection string or a key.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_error(500, "internal_error", "Something went wrong on our side; it has been logged.")


class SecurityHeadersMiddleware:
    """Adds the security headers to every response (pure ASGI, so streaming is untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Answers 413 in our JSON shape when a body is larger than the limit, before a route reads it.

    The limit is a number of bytes, or a function of the request (a route with its own limit, such as uploads),
    or None for the MAX_BODY_BYTES setting.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: BodyLimit = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = self.max_body_bytes
        limit = (given(scope) if callable(given) else given) or settings_body_limit()
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(limit)(scope, receive, send)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException: FastAPI re-raises those from body parsing, so our handler answers 413.
                    raise HTTPException(413, f"The request body is larger than the limit of {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)


def settings_body_limit() -> int:
    """MAX_BODY_BYTES (1 MB by default): the limit of every route without one of its own."""
    try:
        return get_settings().max_body_bytes
    except SettingsError:
        return 1_000_000


def _too_large(limit: int) -> JSONResponse:
    return json_error(413, "payload_too_large", f"The request body is larger than the limit of {limit} bytes.",
                      {"limit_bytes": limit})


# What the widget calls from a customer's site with a chat key, and the message catalogues it fetches.
WIDGET_PATHS = re.compile(r"^/api/(chat|feedback|conversations/[^/]+(/[^/]+)?|assistants/[^/]+/public)$"
                          r"|^/i18n/[A-Za-z0-9_-]+\.json$")
CORS_HEADERS = {"access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": "authorization, content-type, x-api-key, x-assistant-id, "
                                                "x-user-id, x-user-hash, x-visitor-token",
                "access-control-max-age": "600"}
CORS_EXPOSE = b"retry-after, x-conversation-id, x-visitor-token, x-request-id"


class WidgetCorsMiddleware:
    """CORS for the widget's routes: any origin may send, without cookies (no allow-credentials).

    CORS only lets the browser make the call; the key's allowed origins (shared.guard.auth.check_origin) and the
    assistant's decide on the request itself, so a key limited to one site still refuses every other.
    Admin routes get no CORS headers: the console calls them from its own origin.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = dict(scope.get("headers", [])).get(b"origin") if scope["type"] == "http" else None
        if origin is None or not WIDGET_PATHS.match(scope["path"]):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            preflight = Response("OK", media_type="text/plain", headers={  # 200 "OK", as Starlette's CORS answers
                **CORS_HEADERS, "access-control-allow-origin": origin.decode("latin-1"), "vary": "Origin"})
            return await preflight(scope, receive, send)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra: list[tuple[bytes, bytes]] = []  # a route with its own CORS (api/chat.py) keeps its own
                if b"access-control-allow-origin" not in present:
                    extra += [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
                if b"access-control-expose-headers" not in present:
                    extra.append((b"access-control-expose-headers", CORS_EXPOSE))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_cors)
