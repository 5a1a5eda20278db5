"""Metrics are recorded without slowing responses, aggregate correctly, stay inside their workspace, and print."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from shared.core import metrics
from tests.conftest import ROOT
from tests.fakes.chat_fixtures import new_chat_key


def wait_for_rows(engine: Any, sql: str, at_least: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Rows appear once the server has flushed after its response; poll briefly for them."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.db() as conn:
            rows = conn.execute(sql).fetchall()
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def seed(engine: Any, name: str, values: list[float], at: str, workspace_id: str | None) -> None:
    """Points at a fixed time, written through track_metric + flush like the engine does."""
    for value in values:
        metrics.track_metric(name, value, {"seed": True}, workspace_id)
    metrics.flush(wait=True)  # also waits for a flush the server may be running at this moment
    with engine.db() as conn:
        conn.execute("""UPDATE performance_metrics SET "timestamp" = %s
                        WHERE name = %s AND metadata ? 'seed' AND workspace_id IS NOT DISTINCT FROM %s
                          AND "timestamp" > now() - interval '1 minute'""", (at, name, workspace_id))


def test_request_latency_is_written_right_after_each_response(engine) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    assert client.get("/api/keys").status_code == 200
    assert client.delete("/api/keys/key_missing").status_code == 404
    rows = wait_for_rows(engine, """SELECT value, metadata FROM performance_metrics WHERE name = 'http.request_ms'
                                    AND metadata->>'route' = '/api/keys/{key_id}'""")
    assert rows, "no http.request_ms point for the DELETE was flushed after its response"
    assert rows[0]["metadata"] == {"route": "/api/keys/{key_id}", "method": "DELETE", "status": 404}
    assert 0 < rows[0]["value"] < 5_000
    listed = wait_for_rows(engine, """SELECT metadata FROM performance_metrics WHERE name = 'http.request_ms'
                                      AND metadata->>'route' = '/api/keys' AND metadata->>'method' = 'GET'""")
    assert listed and listed[0]["metadata"]["status"] == 200


def test_job_durations_and_failures_are_recorded_per_workspace(engine) -> None:
    from shared.core.queue import publish

    workspace_id, _ = engine.workspace()
    publish("ping", {"echo": "flaky", "fail_attempts": 1, "workspace_id": workspace_id}, retries=2)
    engine.wait_for_queue()
    rows = wait_for_rows(engine, """SELECT name, metadata, workspace_id FROM performance_metrics
                                    WHERE name LIKE 'job.%' ORDER BY "timestamp", name""", at_least=3)
    assert [(r["name"], r["metadata"].get("status"), r["workspace_id"]) for r in rows] == [
        ("job.duration_ms", "failed", workspace_id), ("job.failed", None, workspace_id),
        ("job.duration_ms", "succeeded", workspace_id)]
    assert rows[1]["metadata"] == {"job": "ping", "error": "PingFailure"}  # the class, never the message


def test_track_metric_never_raises_and_drops_points_when_the_database_is_gone(engine, monkeypatch) -> None:
    metrics.track_metric("test.weird", "not a number")  # type: ignore[arg-type]
    metrics.track_metric("test.nan", float("nan"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1")
    from shared.core.settings import get_settings

    get_settings.cache_clear()
    metrics.track_metric("test.lost", 1.0)
    assert metrics.flush(wait=True) == 0 and metrics.pending() == 0


def test_a_burst_of_points_is_written_in_the_background_without_waiting(engine) -> None:
    started = time.perf_counter()
    for n in range(1_000):
        metrics.track_metric("test.burst", n, {"n": n})
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"recording 1,000 points took {elapsed:.2f} s"
    rows = wait_for_rows(engine, "SELECT count(*) AS n FROM performance_metrics WHERE name = 'test.burst' "
                                 "HAVING count(*) >= 200")  # written by the background flusher, unasked
    assert rows and rows[0]["n"] >= 200
    metrics.flush(wait=True)
    with engine.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM performance_metrics WHERE name = 'test.burst'").fetchone() == {
            "n": 1_000}


def test_percentiles_per_bucket_match_known_values(engine) -> None:
    workspace_id, key = engine.workspace()
    seed(engine, "test.latency", [float(v) for v in range(1, 101)], "2024-05-01T10:30:00Z", workspace_id)
    seed(engine, "test.latency", [1000.0], "2024-05-01T11:15:00Z", workspace_id)
    reply = engine.client(key).get("/api/metrics", params={
        "name": "test.latency", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T12:00:00Z", "bucket": "1h"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["name"] == "test.latency" and body["bucket"] == "1h"
    first, second = body["points"]
    assert first["start"].startswith("2024-05-01T10:00:00")
    assert first["count"] == 100 and first["avg"] == 50.5
    # percentile_cont interpolates: p95 of 1..100 sits at rank 94.05 -> 95.05
    assert (first["p50"], round(first["p95"], 2), round(first["p99"], 2)) == (50.5, 95.05, 99.01)
    assert second["start"].startswith("2024-05-01T11:00:00")
    assert second == {**second, "count": 1, "avg": 1000.0, "p50": 1000.0, "p99": 1000.0}
    with engine.db() as conn:
        raw = metrics.get_metrics(conn, "test.latency", *_range("2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"),
                                  workspace_id=workspace_id)
    assert [r["value"] for r in raw] == [1000.0]


def _range(start: str, end: str) -> tuple[Any, Any]:
    start_at, end_at, _ = metrics.window(start, end, "1h")
    return start_at, end_at


def test_a_workspace_sees_only_its_own_metrics(engine) -> None:
    acme, acme_key = engine.workspace("Acme")
    other, other_key = engine.workspace("Other")
    seed(engine, "chat.ttft_ms", [10.0, 20.0], "2024-05-01T10:10:00Z", acme)
    seed(engine, "chat.ttft_ms", [500.0], "2024-05-01T10:10:00Z", other)
    seed(engine, "engine.only", [1.0], "2024-05-01T10:10:00Z", None)
    window = {"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z"}
    acme_client = engine.client(acme_key)
    series = acme_client.get("/api/metrics", params={"name": "chat.ttft_ms", **window}).json()
    assert [(p["count"], p["avg"]) for p in series["points"]] == [(2, 15.0)]
    names = acme_client.get("/api/metrics", params=window).json()
    assert [(n["name"], n["count"]) for n in names["data"]] == [("chat.ttft_ms", 2)]
    assert names["count"] == 1  # neither Other's points nor engine-wide ones
    other_series = engine.client(other_key).get("/api/metrics", params={"name": "chat.ttft_ms", **window}).json()
    assert [p["avg"] for p in other_series["points"]] == [500.0]
    assert engine.client(acme_key).get("/api/metrics", params={"name": "engine.only", **window}).json()["points"] == []


def test_metrics_route_checks_keys_and_parameters(engine) -> None:
    _, key = engine.workspace()
    assert engine.client().get("/api/metrics").status_code == 401
    chat_key = new_chat_key(engine, key)["key"]
    assert engine.client(chat_key).get("/api/metrics").status_code == 403
    client = engine.client(key)
    bad_bucket = client.get("/api/metrics", params={"name": "x", "bucket": "7x"})
    assert bad_bucket.status_code == 400 and bad_bucket.json()["error"]["code"] == "invalid_duration"
    backwards = client.get("/api/metrics", params={"start": "2024-05-02", "end": "2024-05-01"})
    assert backwards.status_code == 400 and backwards.json()["error"]["code"] == "invalid_time_range"
    too_many = client.get("/api/metrics", params={"name": "x", "start": "-30d", "bucket": "1m"})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_buckets"
    relative = client.get("/api/metrics", params={"name": "x", "start": "-2h", "bucket": "5m"})
    assert relative.status_code == 200 and relative.json()["points"] == []


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, env=dict(os.environ), timeout=60)


def test_metrics_show_prints_a_table_and_a_chart(engine) -> None:
    workspace_id, key = engine.workspace()
    client = engine.client(key)
    for _ in range(5):
        client.get("/api/keys")
    seed(engine, "chat.ttft_ms", [float(v) for v in range(1, 21)], "now", workspace_id)
    assert wait_for_rows(engine, "SELECT 1 FROM performance_metrics WHERE name = 'http.request_ms'")
    one = run_cli("metrics", "show", "chat.ttft_ms", "--since", "1h", "--bucket", "5m")
    print(one.stdout)
    assert one.returncode == 0, one.stderr
    assert "chat.ttft_ms" in one.stdout and "p95" in one.stdout
    row = next(line for line in one.stdout.splitlines() if line[:4].isdigit() and line.split()[2] == "20")
    assert row.split()[2:7] == ["20", "10.50", "10.50", "19.05", "19.81"]
    assert any(block in one.stdout for block in "▁▂▃▄▅▆▇█")
    everything = run_cli("metrics", "show", "--since", "1h", "--bucket", "5m")
    print(everything.stdout)
    assert everything.returncode == 0, everything.stderr
    assert "http.request_ms" in everything.stdout and "chat.ttft_ms" in everything.stdout
    bad = run_cli("metrics", "show", "--bucket", "fortnight")
    assert bad.returncode == 1 and "not a duration" in bad.stderr
