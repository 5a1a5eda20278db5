"""The FastAPI app every api/ file builds: error shape, security headers, body limit, request logging."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import AppError, error_body
from shared.metrics import MetricsMiddleware
from shared.observability import init_sentry, install_log_scrubber
from shared.settings import SettingsError, get_settings

log = logging.getLogger("dialog_engine")

SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
              422: "validation_error", 429: "rate_limited", 503: "service_unavailable"}


def create_app(title: str, *, description: str = "", max_body_bytes: int | None = None) -> FastAPI:
    """A FastAPI app with our error handlers and middleware; `max_body_bytes` overrides the settings limit."""
    app = FastAPI(title=f"Dialog Engine: {title}", description=description, version="1.0.0",
                  docs_url=None, redoc_url=None)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SettingsError, _settings_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)  # outside ours: times them too; flushes after the last byte
    install_log_scrubber()
    init_sentry()
    return app


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
    """Answers 413 in our JSON shape when a body is larger than the limit, before a route reads it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body_bytes or _settings_limit()
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


def _settings_limit() -> int:
    try:
        return get_settings().max_body_bytes
    except SettingsError:
        return 1_000_000


def _too_large(limit: int) -> JSONResponse:
    return json_error(413, "payload_too_large", f"The request body is larger than the limit of {limit} bytes.",
                      {"limit_bytes": limit})
