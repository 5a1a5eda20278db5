"""The engine's log lines: LOG_LEVEL for how much, LOG_FORMAT (json by default) for the shape, and the request id.

LOG_LEVEL sets the engine's own loggers (`dialog_engine.*`); libraries stay at their defaults. On Vercel
nothing configures Python logging, so without a handler only warnings would reach the function logs (through
logging's last resort); the engine's logger gets a stderr handler of its own in that case, writing one JSON
object a line (`vercel logs` and log drains keep them as they are; `jq` reads them). Every record made while a
request is served carries that request's id (`record.request_id`, see shared/core/request_id.py), whichever
handler writes it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER = "dialog_engine"
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
# The id of the request being served (set by RequestIdMiddleware); None outside a request.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dialog_engine_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id (in a request), exception text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if rid := getattr(record, "request_id", None):
            line["request_id"] = rid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with ` [request_id]` at the end of a line made during a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # the first line; a traceback follows it
        text = super().formatMessage(record)
        rid = getattr(record, "request_id", None)
        return f"{text} [{rid}]" if rid else text


def apply_log_level() -> str:
    """Set the dialog_engine logger's level from LOG_LEVEL (default INFO) and, when nothing else handles its
    records, give it a stderr handler in LOG_FORMAT (json by default); returns the level applied."""
    install_request_id_on_records()
    try:
        from shared.core.settings import get_settings

        settings = get_settings()
        level: str = settings.log_level
        shape: str = settings.log_format
    except Exception:  # incomplete settings: the app still starts (and answers 503); logging must work then too
        level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
        if level not in logging.getLevelNamesMapping():
            level = "INFO"
        shape = os.environ.get("LOG_FORMAT", "json").strip().lower()
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    formatter = TextFormatter() if shape == "text" else JsonFormatter()
    ours = [h for h in logger.handlers if getattr(h, "dialog_engine", False)]
    if ours:  # applied again (another function in the same process, settings changed): same handler, new shape
        ours[0].setFormatter(formatter)
    elif not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.dialog_engine = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return level


_installed = False


def install_request_id_on_records() -> None:
    """Every LogRecord gets `request_id` (None outside a request), once per process: in the record factory, so
    records of any logger reach any handler (uvicorn's, pytest's, Sentry's breadcrumbs) with it."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    logging.setLogRecordFactory(with_request_id)
