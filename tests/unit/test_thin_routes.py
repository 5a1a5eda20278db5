"""Routes stay thin (STYLE.md 1): no api/ file holds SQL or calls the database helpers itself, and none grows
past the line budget. The queries live in shared/, named, where the slow-query timing sees them."""

from __future__ import annotations

import re
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "api"
MAX_LINES = 180
# The house writes SQL keywords in capitals; prose in summaries ("Select a plan") is not SQL.
SQL = re.compile(r"\b(SELECT\s+[\w*(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS\s*\()")
DB_CALLS = re.compile(r"\b(fetch_one|fetch_all|execute)\s*\(")


def routes() -> list[Path]:
    return sorted(API.glob("*.py"))


def test_no_route_file_holds_sql() -> None:
    found = [f"{path.name}:{n}: {line.strip()}" for path in routes()
             for n, line in enumerate(path.read_text().splitlines(), 1) if SQL.search(line) or DB_CALLS.search(line)]
    assert not found, "SQL belongs in shared/ (a named function there), not in a route:\n" + "\n".join(found)


def test_no_route_file_exceeds_the_line_budget() -> None:
    long = {path.name: n for path in routes() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"route files over {MAX_LINES} lines (move models or helpers into shared/): {long}"


def test_the_checks_catch_what_they_look_for() -> None:
    assert SQL.search('rows = fetch_all(conn, "SELECT id FROM sources")') and DB_CALLS.search("fetch_one(conn, q)")
    assert SQL.search("DELETE FROM api_keys WHERE id = %s") and SQL.search("UPDATE api_keys SET name = %s")
    assert not SQL.search('summary="Select a plan, then update the settings"')
