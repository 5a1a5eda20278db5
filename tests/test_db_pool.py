"""A warm process reuses its database connections (counted on the wire), and a connection the server
closed while it sat idle in the pool is replaced, never handed to a request."""

from __future__ import annotations

import time

import psycopg
from psycopg.conninfo import conninfo_to_dict

from shared.core.db import connect, get_pool
from tests.conftest import clear_caches
from tests.fakes.chat_fixtures import wait_for


def terminate_idle(engine) -> int:
    """pg_terminate_backend for every idle client connection to the test's database; returns once they are gone."""
    database = conninfo_to_dict(engine.dsn)["dbname"]
    with psycopg.connect(engine.stack.admin_dsn, autocommit=True) as admin:
        def idle_pids() -> list[int]:
            return [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                                                "AND state = 'idle' AND pid <> pg_backend_pid()",
                                                (database,)).fetchall()]
        # A pooled connection can still be busy for a moment after the response (the metrics flush runs then).
        pids = wait_for(idle_pids)
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    wait_for(lambda: not backend_pids(engine) & set(pids))
    time.sleep(0.2)  # the proxy passes the server's goodbye on
    return len(pids)


def backend_pids(engine) -> set[int]:
    database = conninfo_to_dict(engine.dsn)["dbname"]
    with psycopg.connect(engine.stack.admin_dsn, autocommit=True) as admin:
        return {r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                                             "AND pid <> pg_backend_pid()", (database,)).fetchall()}


def test_sequential_requests_reuse_one_connection(engine, pg_wire) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    before = pg_wire.mark()
    for _ in range(30):
        assert client.get("/api/keys").status_code == 200
        assert client.get("/api/assistants").status_code == 200
    statements, connections = pg_wire.mark()
    assert statements - before[0] >= 60  # the requests did reach the database
    # 60 requests and their metrics writes: a few backends (a request may overlap the previous ones' metrics
    # writes and teardown on a loaded machine), opened once and reused; it was one per request and per write.
    assert connections - before[1] <= 8


def test_a_connection_terminated_while_idle_is_replaced_not_handed_out(engine, pg_wire) -> None:
    _, key = engine.workspace()
    client = engine.client(key)
    assert client.get("/api/keys").status_code == 200
    pool = get_pool()
    assert pool is not None
    wait_for(lambda: pool.idle_count() >= 1)  # given back after the response
    assert terminate_idle(engine) >= 1
    for _ in range(3):  # each would be a 503 had the dead connection been handed out
        reply = client.get("/api/keys")
        assert reply.status_code == 200, reply.text
    assert pool.discarded >= 1


def test_reused_backends_are_the_same_server_processes(engine, monkeypatch) -> None:
    """Seen from the server: 30 requests are served by a few backends, not one each."""
    monkeypatch.setenv("AUTH_CACHE_S", "0")  # every request asks the database
    clear_caches()
    _, key = engine.workspace()
    client = engine.client(key)
    seen: set[int] = set()
    for _ in range(30):
        assert client.get("/api/keys").status_code == 200
        seen |= backend_pids(engine)
    assert 1 <= len(seen) <= 8


def test_a_fresh_connection_per_use_when_the_pool_is_off(engine, pg_wire, monkeypatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "0")
    clear_caches()
    before = pg_wire.mark()[1]
    for _ in range(3):
        with connect() as conn:
            conn.execute("SELECT 1")
    assert pg_wire.mark()[1] - before == 3
    assert get_pool() is None


def test_a_transaction_left_open_is_not_pooled(engine, pg_wire) -> None:
    with connect() as conn:
        conn.autocommit = False
        conn.execute("SELECT 1")  # opens a transaction that is never committed
    with connect() as conn:  # a new connection: the open transaction is not carried into this use
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE and conn.autocommit


def test_tasks_holding_every_connection_can_still_open_another(engine, monkeypatch) -> None:
    """A job holds its route's connection and its body (a chat turn, a reply store) opens another: with every
    pooled connection held that way, waiting for a free one would wait on itself. Here it failed after
    DB_POOL_WAIT_S with 503 `database_busy`; a holder now gets an extra connection at once."""
    import threading

    monkeypatch.setenv("DB_POOL_SIZE", "2")
    monkeypatch.setenv("DB_POOL_WAIT_S", "1")
    clear_caches()
    both_hold = threading.Barrier(2, timeout=10)
    outcomes: list[object] = []

    def job() -> None:
        try:
            with connect() as outer:
                outer.execute("SELECT 1")
                both_hold.wait()
                with connect() as inner:
                    outcomes.append(inner.execute("SELECT 2").fetchone())
        except Exception as exc:  # what the old pool raised: ServiceUnavailable (database_busy)
            outcomes.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == [{"?column?": 2}, {"?column?": 2}]
    pool = get_pool()
    assert pool is not None and pool.overflowed == 2
    with connect() as conn:  # the extra connections were closed, the pool's own are reused
        assert conn.execute("SELECT 3 AS n").fetchone() == {"n": 3}
