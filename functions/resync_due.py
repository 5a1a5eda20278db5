"""The `resync_due` job (hourly cron): start the scheduled re-sync of every source that is due (and the retry of
a sync that was cut short), and nudge syncs that stalled (a lost job) or give up on them after a few hours, so
none stays 'crawling'. Giving up removes no page: the abandoned sync keeps everything it did not reach."""

from __future__ import annotations

import logging
import time
from typing import Any

from shared.core.db import connect, fetch_all
from shared.core.jobs import JobPayload
from shared.core.queue import publish
from shared.knowledge import source_kind
from shared.knowledge.crawl.pipeline import PageRef, finalize, mark_incomplete, publish_crawl, publish_pages, start_sync

log = logging.getLogger("dialog_engine.ingest")

BATCH = 200
STALLED = "30 minutes"      # no progress this long: queue the missing jobs again
ABANDONED = "3 hours"       # no progress this long: pending pages fail and the sync finishes


class Payload(JobPayload):
    """Nothing to say: the cron queues {"cron": "resync"}."""


def run(payload: Payload) -> dict[str, Any]:
    with connect() as conn:
        # Claim due sources by moving next_sync_at, so an overlapping run does not start them twice.
        # Due: a scheduled sync, or the retry of a sync that was cut short (sources without a schedule too).
        due = fetch_all(conn, f"""
            UPDATE sources SET next_sync_at = now() + make_interval(hours => coalesce(sync_interval_hours, 1))
            WHERE id IN (SELECT id FROM sources WHERE next_sync_at <= now()
                           AND status IN ('ready', 'failed') ORDER BY next_sync_at LIMIT {BATCH}
                         FOR UPDATE SKIP LOCKED)
            RETURNING id, workspace_id""")
        started = 0
        for source in due:
            try:
                started += start_sync(conn, source["workspace_id"], source["id"]) is not None
            except Exception as exc:  # one source's trouble must not stop the others
                log.error("scheduled resync of %s failed to start: %s", source["id"], type(exc).__name__)
        swept = sweep(conn)
        index = _vector_index(conn)
    return {"due": len(due), "started": started, **swept, **index}


def _vector_index(conn: Any) -> dict[str, str]:
    """The HNSW index back after a bulk load whose end did not queue its build (see
    shared/knowledge/vectors/bulk_index.py)."""
    from shared.knowledge.vectors.bulk_index import sweep as index_sweep

    try:
        done = index_sweep(conn)
    except Exception as exc:  # the next hour tries again
        log.error("checking the vector index failed: %s", type(exc).__name__)
        return {}
    return {"vector_index": done} if done else {}


def sweep(conn: Any) -> dict[str, int]:
    """Re-queue the jobs of stalled syncs; finish abandoned ones with their pending pages failed."""
    hour = time.strftime("%Y%m%d%H", time.gmtime())
    stalled = fetch_all(conn, f"""
        SELECT id, workspace_id, assistant_id, kind, status, crawl_id, sync_generation,
               updated_at < now() - interval '{ABANDONED}' AS abandoned
        FROM sources WHERE status IN ('queued', 'crawling', 'indexing')
          AND updated_at < now() - interval '{STALLED}'
        ORDER BY updated_at LIMIT {BATCH}""")
    nudged = abandoned = 0
    for source in stalled:
        generation = source["sync_generation"]
        try:
            if source["abandoned"]:
                # Its jobs are lost: the sync saw only part of the source, so it removes nothing it did not reach.
                mark_incomplete(conn, source["id"], generation, f"abandoned: no progress for {ABANDONED}")
                conn.execute("""UPDATE documents SET status = 'failed', updated_at = now(), attempt_started_at = NULL,
                                    error = 'timed_out: the page was not processed within ' || %s
                                WHERE source_id = %s AND sync_generation = %s AND status = 'pending'""",
                             (ABANDONED, source["id"], generation))
                conn.execute("UPDATE sources SET crawl_id = NULL, status = 'indexing' WHERE id = %s "
                             "AND sync_generation = %s", (source["id"], generation))
                finalize(conn, source["id"], generation)
                abandoned += 1
            elif source["status"] == "queued" or (source["status"] == "crawling" and not source["crawl_id"]) \
                    or source_kind(source["kind"]).fetch is None:
                # Not yet discovered, or content stored with the source (its sync indexes it): start again.
                publish_crawl(source, generation, tag=f"-sweep{hour}")
                nudged += 1
            elif source["crawl_id"]:
                publish("poll_crawl", {"workspace_id": source["workspace_id"], "source_id": source["id"],
                                       "generation": generation, "crawl_id": source["crawl_id"], "poll": 1},
                        dedup_id=f"poll-{source['id']}-g{generation}-sweep{hour}")
                nudged += 1
            else:
                pending = fetch_all(conn, """SELECT url FROM documents WHERE source_id = %s AND sync_generation = %s
                                             AND status = 'pending' LIMIT 1000""", (source["id"], generation))
                publish_pages(source, generation, [PageRef(row["url"]) for row in pending], tag=f"-sweep{hour}")
                nudged += 1
        except Exception as exc:  # one source must not stop the sweep
            log.error("sweeping source %s failed: %s", source["id"], type(exc).__name__)
    return {"nudged": nudged, "abandoned": abandoned}
