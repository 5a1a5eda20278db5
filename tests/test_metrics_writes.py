"""Metrics never touch the request path: each request's points go out in one INSERT after its response, on a
pooled connection (counted on the wire), and requests that record nothing write nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from shared.core import metrics

INSERT = "INSERT INTO performance_metrics"


def metric_writes(counter, since: int) -> list[str]:
    return [s for s in counter.sql(since, metrics=True) if INSERT in s]


def test_each_request_writes_its_metrics_in_one_insert_on_a_reused_connection(engine, pg_wire) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    start, connections = pg_wire.mark()
    for _ in range(15):
        since = pg_wire.mark()[0]
        assert client.get("/api/keys").status_code == 200
        pg_wire.wait_for(INSERT, since)  # written after the response
        metrics.flush(wait=True)
        time.sleep(0.05)
        assert len(metric_writes(pg_wire, since)) == 1
    # Requests and their metrics writes share a few pooled backends (it was a new one for every write).
    assert pg_wire.mark()[1] - connections <= 4


def test_concurrent_requests_write_at_most_one_insert_each(engine, pg_wire) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    since = pg_wire.mark()[0]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: client.get("/api/keys"), range(40)))
    assert all(r.status_code == 200 for r in replies)
    metrics.flush(wait=True)
    assert 1 <= len(metric_writes(pg_wire, since)) <= 40
    statements = pg_wire.sql(since, metrics=True)
    assert sum("performance_metrics" in s for s in statements) == len(metric_writes(pg_wire, since))


def test_requests_that_record_nothing_write_nothing(engine, pg_wire) -> None:
    since, connections = pg_wire.mark()
    anonymous = engine.client()
    for path in ("/api/health", "/api/keys", "/api/no-such-route"):
        for _ in range(5):
            assert anonymous.get(path).status_code in (200, 401, 404)
    assert pg_wire.sql(since, metrics=True) == [] and pg_wire.mark()[1] == connections
