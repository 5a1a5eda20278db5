"""Sentry (loaded only when SENTRY_DSN is set) and secret scrubbing for error events and every log record."""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, cast
from urllib.parse import urlsplit

log = logging.getLogger("dialog_engine.observability")
FILTERED = "[Filtered]"

# (pattern, replacement): what a secret looks like wherever it turns up in text.
PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {FILTERED}"),
    (re.compile(r"\bde_(admin|chat|idsec)_[A-Za-z0-9_-]{6,}"), rf"de_\1_{FILTERED}"),  # our API keys, identity secrets
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), f"sk-{FILTERED}"),  # OpenAI / Anthropic keys
    (re.compile(r"\beyJ[A-Za-z0-9_=-]{10,}(?:\.[A-Za-z0-9_=-]+)*"), FILTERED),  # JWTs, QStash tokens (base64 JSON)
    (re.compile(r"\bsig_[A-Za-z0-9]{10,}"), f"sig_{FILTERED}"),  # QStash signing keys
    # scheme://user:PASSWORD@host (database and Redis URLs)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#\s@]*:)[^@\s/]+@"), rf"\1{FILTERED}@"),
    (re.compile(r"(?i)(authorization|x-api-key|api[_-]?key|apikey|token|secret|password|passwd)"
                r"([\"']?\s*[:=]\s*[\"']?)(?!\[Filtered)[^\s\"',;&}]+"), rf"\1\2{FILTERED}"),
]
# Dictionary keys whose values are secrets whatever they look like (headers, frame variables, extras).
SENSITIVE_KEY = re.compile(r"(?i)(authorization|cookie|api[-_]?key|token|secret|password|passwd|signature|dsn)")
# Settings whose values are secrets, by name: derived from the Settings fields (see secret_settings), so a
# new FOO_SECRET / FOO_TOKEN / FOO_API_KEY is scrubbed without anyone remembering to list it here.
SECRET_SETTING = re.compile(r"(secret|token|key|passphrase|password|dsn|identity)$")
# Keyed by the settings object itself, not its id(): a new object may reuse a freed one's id.
_known: tuple[object, list[str]] = (None, [])


def secret_settings() -> list[str]:
    """Names of the settings holding secrets; *_url settings give their password (user:PASSWORD@host)."""
    from pydantic import SecretStr

    from shared.core.settings import Settings
    from shared.llm.registry import secret_settings as provider_secrets

    return sorted({name for name, info in Settings.model_fields.items()
                   if SECRET_SETTING.search(name) or SecretStr in _types(info.annotation)} | provider_secrets())


def _types(annotation: Any) -> tuple[Any, ...]:
    return (annotation, *getattr(annotation, "__args__", ()))


def known_secrets() -> list[str]:
    """The configured secret values themselves (random local tokens match no pattern), longest first."""
    global _known
    try:
        from shared.core.settings import get_settings

        settings = get_settings()
    except Exception:
        return []
    if _known[0] is not settings:
        values = [_plain(getattr(settings, name, None)) for name in secret_settings()]
        for name in type(settings).model_fields:
            value = getattr(settings, name, None)
            if name.endswith("_url") and isinstance(value, str):
                try:
                    values.append(urlsplit(value).password)
                except ValueError:
                    pass
        _known = (settings, sorted({v for v in values if v and len(v) >= 8}, key=len, reverse=True))
    return _known[1]


def _plain(value: Any) -> str | None:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value if isinstance(value, str) else None


def scrub(text: str) -> str:
    """`text` with every secret we can recognise replaced by [Filtered]."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, FILTERED)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_data(value: Any, depth: int = 0) -> Any:
    """Scrub a JSON-like structure (a Sentry event) in place and return it."""
    if depth > 20:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        for key in list(value):
            item = value[key]
            if isinstance(key, str) and SENSITIVE_KEY.search(key) and isinstance(item, (str, int, float, bytes)):
                value[key] = FILTERED
            else:
                value[key] = scrub_data(item, depth + 1)
        return value
    if isinstance(value, list):
        value[:] = [scrub_data(item, depth + 1) for item in value]
        return value
    if isinstance(value, tuple):
        return tuple(scrub_data(item, depth + 1) for item in value)
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry hook for errors and transactions: the event leaves without secrets, tagged with the request id
    (the X-Request-Id the caller got back and every log line of the request carries)."""
    try:
        from shared.core.logs import request_id

        if rid := request_id.get():
            event.setdefault("tags", {})["request_id"] = rid
        return scrub_data(event)
    except Exception:
        return {}  # never ship an event we could not clean


class SecretScrubber(logging.Filter):
    """Rewrites a record's message and traceback text without secrets (always lets the record through)."""

    _busy = threading.local()  # reading the settings must never log its way back in here

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._busy, "on", False):
            return True
        self._busy.on = True
        try:
            message = record.getMessage()
            clean = scrub(message)
            if clean != message:  # keep msg/args as they were otherwise: Sentry groups logs by the template
                record.msg, record.args = clean, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub(record.exc_text)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info)
        except Exception:
            return True
        finally:
            self._busy.on = False
        return True


_scrubber_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record of every logger, once per process.

    Installed in the record factory rather than on a handler: a filter on a logger misses records of its
    child loggers, and handlers added later (uvicorn's, pytest's, Sentry's breadcrumbs) would miss it.
    """
    global _scrubber_installed
    if _scrubber_installed:
        return
    _scrubber_installed = True
    scrubber, make_record = SecretScrubber(), logging.getLogRecordFactory()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        scrubber.filter(record)
        return record

    logging.setLogRecordFactory(scrubbed_record)


_sentry_started = False


def init_sentry() -> bool:
    """Start Sentry when SENTRY_DSN is set (sentry_sdk is imported only then); True when it runs."""
    global _sentry_started
    if _sentry_started:
        return True
    dsn, environment = _sentry_settings()
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration

        sentry_sdk.init(
            dsn=dsn, environment=environment, release=os.environ.get("VERCEL_GIT_COMMIT_SHA") or None,
            traces_sample_rate=_settings().sentry_traces_sample_rate,
            send_default_pii=False,
            max_request_body_size="never",  # bodies carry users' messages
            # Auto-enabled integrations import openai, anthropic, ... at init: cold start would pay for them.
            auto_enabling_integrations=False,
            integrations=[StarletteIntegration(), FastApiIntegration()],
            before_send=cast(Any, before_send), before_send_transaction=cast(Any, before_send),
        )
    except Exception as exc:  # a bad DSN must not stop the function from serving
        log.warning("Sentry not started: %s", type(exc).__name__)
        return False
    _sentry_started = True
    return True


def _sentry_settings() -> tuple[str | None, str]:
    try:
        from shared.core.settings import get_settings

        settings = get_settings()
        return settings.sentry_dsn, settings.vercel_env or settings.environment
    except Exception:  # settings incomplete at import time: the app still starts, and answers 503 later
        return os.environ.get("SENTRY_DSN"), os.environ.get("VERCEL_ENV") or os.environ.get("ENVIRONMENT", "")


def _settings():  # imported late: observability is loaded by create_app before settings may be valid
    from shared.core.settings import get_settings

    return get_settings()
