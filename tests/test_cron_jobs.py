"""The scheduled jobs: cleanup rolls old metrics up into hourly points; summaries are queued for long
conversations so the next turn finds them ready."""

from __future__ import annotations

import os

from psycopg.types.json import Jsonb

from functions import cleanup, refresh_summaries
from shared.dialog.conversations import HISTORY_LIMIT, finish_turn, start_turn
from tests.fakes.chat_fixtures import make_assistant


def test_cleanup_rolls_old_metrics_into_hourly_points_and_keeps_recent_ones(engine) -> None:
    with engine.db() as conn:
        for minutes, value in ((0, 10.0), (10, 20.0), (20, 30.0), (70, 5.0)):
            conn.execute("""INSERT INTO performance_metrics (name, value, "timestamp", metadata)
                            VALUES ('chat.ttft_ms', %s, date_trunc('hour', now()) - interval '40 days'
                                    + make_interval(mins => %s), %s)""", (value, minutes, Jsonb({})))
        conn.execute("INSERT INTO performance_metrics (name, value) VALUES ('chat.ttft_ms', 99)")
    assert cleanup.run(cleanup.Payload()) == {"jobs_deleted": 0, "metric_rollups_written": 2,
                                              "term_stats_compacted": 0}
    assert cleanup.run(cleanup.Payload())["metric_rollups_written"] == 0  # rollups are never rolled again
    with engine.db() as conn:
        rows = conn.execute("""SELECT value, metadata FROM performance_metrics WHERE name = 'chat.ttft_ms'
                                   ORDER BY "timestamp" """).fetchall()
    assert [(r["value"], r["metadata"].get("count")) for r in rows] == [(20.0, 3), (5.0, 1), (99.0, None)]
    assert rows[0]["metadata"]["rollup"] == "1h" and rows[0]["metadata"]["max"] == 30.0


def test_summaries_are_queued_for_long_conversations_only(engine) -> None:
    workspace, _ = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
        ids = []
        for turns in (HISTORY_LIMIT, 2):
            conversation = None
            for n in range(turns // 2 + 1):
                start = start_turn(conn, workspace_id=workspace, assistant_id=assistant,
                                   conversation_id=conversation, user_message=f"question {n}")
                conversation = start.conversation_id
                finish_turn(conn, workspace_id=workspace, conversation_id=conversation, content=f"answer {n}",
                            citations=[], model="m", provider="offline", failover=None, usage={}, timings={},
                            status="complete", error=None)
            ids.append(conversation)
    assert refresh_summaries.run(refresh_summaries.Payload()) == {"queued": 1}
    engine.wait_for_queue()
    with engine.db() as conn:
        summaries = {r["id"]: r["summary"] for r in conn.execute("SELECT id, summary FROM conversations")}
        jobs = conn.execute("SELECT name, status FROM jobs").fetchall()
    assert summaries[ids[0]] and not summaries[ids[1]]
    assert [(j["name"], j["status"]) for j in jobs] == [("summarize_conversation", "succeeded")]


def test_the_summaries_cron_is_scheduled_and_authorised(engine) -> None:
    reply = engine.client(authorization=f"Bearer {os.environ['CRON_SECRET']}").get("/api/cron/summaries")
    assert reply.status_code == 200 and reply.json()["queued"] == "refresh_summaries"
