"""Opaque keyset cursors for list routes: the sort key of the last row seen, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Literal

from shared.core.errors import Unprocessable

MAX_LIMIT = 100


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


Kind = Literal["time", "text", "int"]
BIGINT = 2**63


def decode_cursor(cursor: str, *kinds: Kind) -> list[Any]:
    """The values encode_cursor was given, checked against the kinds of the sort key (a timestamp, text or a
    bigint), or a 422 naming the `cursor` field: a forged cursor must not reach the SQL as the wrong type."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise _unrecognised()
    return [_checked(value, kind) for value, kind in zip(values, kinds, strict=True)]


def _checked(value: Any, kind: Kind) -> Any:
    if kind == "int":
        number = int(value) if isinstance(value, str) and value.isdigit() else value
        if isinstance(number, int) and not isinstance(number, bool) and -BIGINT <= number < BIGINT:
            return number
    elif isinstance(value, str) and _storable(value):
        if kind == "text":
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise _unrecognised()


def _storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor unpaired surrogates (which JSON's \\ud800 escapes can make)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _unrecognised() -> Unprocessable:
    return Unprocessable("The cursor is not one this API returned; start again without it.",
                         details=[{"field": "cursor", "problem": "unrecognised cursor", "type": "value_error"}])


def page(rows: list[dict[str, Any]], limit: int, *key: str) -> tuple[list[dict[str, Any]], str | None]:
    """Rows fetched with LIMIT limit+1 -> (this page, the cursor of the next page or None at the end)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*(rows[-1][k] for k in key))
