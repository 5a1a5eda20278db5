"""Small request rules: browser origins (shared.guard.origins) and list cursors (shared.core.pagination)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.core.errors import Forbidden, Unprocessable
from shared.core.pagination import decode_cursor, encode_cursor, page
from shared.guard.origins import normalize_origin, origin_allowed, require_origin


def test_origin_allowed_compares_scheme_and_host_case_insensitively() -> None:
    assert origin_allowed(None, ["https://shop.example"])             # no Origin: not a browser
    assert origin_allowed("https://any.example", [])                  # no list: any site
    assert origin_allowed("https://SHOP.example", ["https://shop.example/"])
    assert not origin_allowed("https://evil.example", ["https://shop.example"])
    assert not origin_allowed("http://shop.example", ["https://shop.example"])  # the scheme counts
    assert origin_allowed("http://engine.local:3000", ["https://shop.example"], host="engine.local:3000")


def test_origins_are_stored_in_one_spelling_and_anything_else_is_refused() -> None:
    assert normalize_origin(" HTTPS://Shop.Example:8443/ ") == "https://shop.example:8443"
    for bad in ("shop.example", "https://shop.example/path", "https://shop.example/?q=1", "ftp://shop.example",
                "https://"):
        with pytest.raises(ValueError):
            normalize_origin(bad)


def test_a_refused_origin_is_a_403_naming_it() -> None:
    with pytest.raises(Forbidden) as refused:
        require_origin("https://evil.example", ["https://shop.example"], what="this key")
    assert refused.value.code == "origin_not_allowed" and "https://evil.example" in refused.value.message


def test_a_cursor_gives_back_the_sort_key_it_was_made_from() -> None:
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    cursor = encode_cursor(moment.isoformat(), "abc", 42)
    assert "=" not in cursor
    assert decode_cursor(cursor, "time", "text", "int") == [moment, "abc", 42]
    # A timestamp without a zone is read as UTC.
    assert decode_cursor(encode_cursor("2024-05-01T12:30:00"), "time") == [moment]


@pytest.mark.parametrize("cursor", [
    "not base64 at all!", encode_cursor("abc"), encode_cursor(1, 2), encode_cursor(True), encode_cursor(2**63),
    encode_cursor("a\x00b"), encode_cursor({"id": 1}), ""])
def test_a_forged_cursor_is_a_422_naming_the_field(cursor: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        decode_cursor(cursor, "int")
    assert refused.value.details == [{"field": "cursor", "problem": "unrecognised cursor", "type": "value_error"}]


def test_a_page_has_a_next_cursor_only_when_there_is_more() -> None:
    rows = [{"id": n} for n in range(4)]
    assert page(rows[:3], 3, "id") == (rows[:3], None)
    shown, cursor = page(rows, 3, "id")
    assert shown == rows[:3] and cursor is not None and decode_cursor(cursor, "int") == [2]
