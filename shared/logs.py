"""LOG_LEVEL: how much the engine's own loggers (`dialog_engine.*`) say; libraries stay at their defaults.

On Vercel nothing configures Python logging, so without a handler only warnings would reach the function
logs (through logging's last resort); the engine's logger gets a stderr handler of its own in that case.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER = "dialog_engine"
FORMAT = "%(levelname)s %(name)s: %(message)s"


def apply_log_level() -> str:
    """Set the dialog_engine logger's level from LOG_LEVEL (default INFO); returns the level applied."""
    try:
        from shared.settings import get_settings

        level: str = get_settings().log_level
    except Exception:  # incomplete settings: the app still starts (and answers 503); logging must work then too
        level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
        if level not in logging.getLevelNamesMapping():
            level = "INFO"
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    return level
