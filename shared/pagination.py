"""Opaque keyset cursors for list routes: the sort key of the last row seen, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.errors import Unprocessable

MAX_LIMIT = 100


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The values encode_cursor was given, or a 422 naming the `cursor` field."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or len(values) != size or not all(isinstance(v, (str, int)) for v in values):
        raise Unprocessable("The cursor is not one this API returned; start again without it.",
                            details=[{"field": "cursor", "problem": "unrecognised cursor", "type": "value_error"}])
    return values


def page(rows: list[dict[str, Any]], limit: int, *key: str) -> tuple[list[dict[str, Any]], str | None]:
    """Rows fetched with LIMIT limit+1 -> (this page, the cursor of the next page or None at the end)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*(rows[-1][k] for k in key))
