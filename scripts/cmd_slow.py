"""`db slow-queries [--limit N]`: pg_stat_statements where the database has it, else our own record.

Our own record: shared.core.db's fetch_one / fetch_all / execute time every statement, and one slower than
SLOW_QUERY_MS (default 200) becomes a db.slow_query_ms metric with the statement text (placeholders, no
values). scripts/cmd_db.py adds it to its `db` group (add_commands).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import psycopg

PG_STAT_STATEMENTS = """
    SELECT query, calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms, max_exec_time AS max_ms
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY mean_exec_time DESC LIMIT %s"""
OWN_RECORD = """
    SELECT metadata->>'sql' AS query, count(*) AS calls, sum(value) AS total_ms, avg(value) AS mean_ms,
           max(value) AS max_ms, max("timestamp") AS last_seen
    FROM performance_metrics
    WHERE name = 'db.slow_query_ms' AND "timestamp" >= %s
    GROUP BY 1 ORDER BY mean_ms DESC LIMIT %s"""


def add_commands(db: argparse._SubParsersAction) -> None:
    """`slow-queries` under the `db` group's subcommands (handed in: no digging in argparse's insides)."""
    slow = db.add_parser("slow-queries", help="the slowest statements (pg_stat_statements or our own record)")
    slow.add_argument("--limit", type=int, default=10)
    slow.add_argument("--since", default="7d", help="window for our own record (default 7d)")
    slow.set_defaults(func=cmd_slow_queries)


def has_pg_stat_statements(conn: psycopg.Connection[Any]) -> bool:
    """Installed in this database and loaded (reading the view fails unless shared_preload_libraries has it)."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() is None:
        return False
    try:
        conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1")
        return True
    except psycopg.Error:
        return False


def cmd_slow_queries(args: argparse.Namespace) -> int:
    from shared.core import metrics
    from shared.core.db import connect

    with connect() as conn:
        if has_pg_stat_statements(conn):
            rows = conn.execute(PG_STAT_STATEMENTS, (args.limit,)).fetchall()
            print("source: pg_stat_statements (every statement since its last reset, slowest mean first)")
        else:
            since, _, _ = metrics.window(args.since, "now", "1d")
            rows = conn.execute(OWN_RECORD, (since, args.limit)).fetchall()
            threshold = os.environ.get("SLOW_QUERY_MS") or f"{metrics.DEFAULT_SLOW_QUERY_MS:.0f}"
            print(f"source: the engine's own record (statements over SLOW_QUERY_MS={threshold} ms since "
                  f"{args.since}; pg_stat_statements is not enabled in this database)")
    if not rows:
        print("no slow queries recorded")
        return 0
    print(f"{'calls':>7} {'mean ms':>10} {'max ms':>10} {'total ms':>11}  query")
    for row in rows:
        query = " ".join(str(row["query"]).split())
        print(f"{row['calls']:>7} {row['mean_ms']:>10.1f} {row['max_ms']:>10.1f} {row['total_ms']:>11.1f}  "
              f"{query[:110] + ('…' if len(query) > 110 else '')}")
    return 0
