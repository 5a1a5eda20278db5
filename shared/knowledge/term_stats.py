"""BM25 term statistics per assistant (migration 0006): a ledger of signed deltas that triggers on chunks
append to, never update, so parallel ingest jobs never wait on one another for a shared counter.

compact() folds an assistant's rows into one per (language, lexeme) and drops the ones that sum to zero.
It takes only rows no other compaction holds (SKIP LOCKED): it never waits, never deadlocks, and a row
that another transaction appends meanwhile is simply left for next time. Sums stay exact throughout, so
search reads right whether or not a compaction ran; it only keeps the rows a search sums few.
"""

from __future__ import annotations

import psycopg

from shared.core.db import Row, fetch_all

COMPACT = """
WITH taken AS (
    DELETE FROM term_stats WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM term_stats WHERE workspace_id = %(ws)s AND assistant_id = %(asst)s
        FOR UPDATE SKIP LOCKED))
    RETURNING workspace_id, assistant_id, language, lexeme, chunks, tokens)
INSERT INTO term_stats (workspace_id, assistant_id, language, lexeme, chunks, tokens)
SELECT workspace_id, assistant_id, language, lexeme, sum(chunks), sum(tokens) FROM taken
GROUP BY workspace_id, assistant_id, language, lexeme HAVING sum(chunks) <> 0 OR sum(tokens) <> 0"""

# Assistants whose ledger holds noticeably more rows than distinct lexemes.
UNCOMPACTED = """
SELECT workspace_id, assistant_id FROM term_stats GROUP BY workspace_id, assistant_id
HAVING count(*) > 1.2 * count(DISTINCT (language, lexeme)) LIMIT %(limit)s"""


def compact(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> int:
    """Fold one assistant's statistics rows; returns the rows written."""
    with conn.transaction():
        return conn.execute(COMPACT, {"ws": workspace_id, "asst": assistant_id}).rowcount


def compact_all(conn: psycopg.Connection[Row], limit: int = 200) -> int:
    """Compact every assistant whose ledger grew (the daily cleanup); returns how many were compacted."""
    due = fetch_all(conn, UNCOMPACTED, {"limit": limit})
    for row in due:
        compact(conn, row["workspace_id"], row["assistant_id"])
    return len(due)
