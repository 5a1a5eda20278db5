"""A small per-process pool of PostgreSQL connections: warm instances reuse their backends.

Vercel's Fluid compute reuses a warm instance and runs requests concurrently in it; self-hosting has no
pooler at all. A fresh backend costs the connect and then runs the same statements about twice as slowly
(its catalog caches are cold), so a warm instance keeps a few connections:

- none at first and none kept longer than DB_POOL_IDLE_S unused (min size 0: a quiet instance holds no
  backend, and a frozen one finds its stale connections gone, not handed out);
- at most DB_POOL_SIZE checked out at once; a request beyond that waits up to DB_POOL_WAIT_S (then 503);
  but a task that already holds one (a job that runs a chat turn, a reply stored beside the turn's own
  connection) never waits: it would be waiting on itself, and N such tasks deadlock a pool of N. With no
  slot free it gets an extra connection outside the count, closed after use (`held()` marks a task
  holding one it was handed);
- every checkout is health-checked without a round trip: a connection whose socket has something to read
  while idle was closed or terminated by the server (pg_terminate_backend, a restart, the pooler's idle
  timeout) and is replaced, never handed to a request; one returned in a transaction or broken is closed;
- a new connection is opened in the caller's thread, so an unreachable database fails the request at
  once, not after a pool's wait (psycopg_pool waits its whole timeout for a background connect, and grows
  one connection at a time).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

log = logging.getLogger("dialog_engine.db")
MAX_LIFETIME_S = 1800.0  # then replaced, so backends (and a pooler's) don't live forever
SPARE_CONNECT_TIMEOUT_S = 5  # a spare connection opened beside a request: short, the request is waiting
# Connections this task (and the threads and tasks it starts, which copy its context) holds from the pool.
_holding: ContextVar[int] = ContextVar("dialog_engine_db_holding", default=0)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Mark the code inside as holding a pooled connection it was handed (a FastAPI dependency's is
    opened in another context, so the mark does not reach the route by itself)."""
    _holding.set(_holding.get() + 1)
    try:
        yield
    finally:
        # Not a token reset: FastAPI enters a sync dependency in one copied context and leaves it in another.
        _holding.set(max(0, _holding.get() - 1))


class PoolBusy(Exception):
    """Every connection of the pool stayed checked out for the whole wait."""


class Pool:
    def __init__(self, kwargs: dict[str, Any], size: int, idle_s: float, wait_s: float) -> None:
        self.kwargs = kwargs
        self.size = size
        self.idle_s = idle_s
        self.wait_s = wait_s
        self.opened = 0        # connections this pool opened (tests and the bench read it)
        self.discarded = 0     # idle ones found broken at checkout
        self.overflowed = 0    # extra connections for tasks that already held one
        self.closed = False
        self._idle: list[tuple[psycopg.Connection[Any], float, float]] = []  # (conn, born, returned), LIFO
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._janitor: threading.Thread | None = None

    @contextlib.contextmanager
    def connection(self, connect_timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        nested = _holding.get() > 0  # waiting for a slot could mean waiting for our own connection to return
        if nested and not self._slots.acquire(blocking=False):
            conn = self._open(connect_timeout)
            self.overflowed += 1
            try:
                with held():
                    yield conn
            finally:
                _close(conn)
            return
        if not nested and not self._slots.acquire(timeout=self.wait_s):
            raise PoolBusy(f"no database connection free after {self.wait_s:.1f} s")
        with self._lend(connect_timeout) as conn:
            yield conn

    @contextlib.contextmanager
    def spare(self) -> Iterator[psycopg.Connection[Any] | None]:
        """A connection if a slot is free right now (an idle one, else a new one), else None at once: for
        work beside a caller's own connection that must never wait for a slot (it could be waiting on its
        caller: DB_POOL_SIZE=1, or every slot held by callers doing the same)."""
        if not self._slots.acquire(blocking=False):
            yield None
            return
        with self._lend(SPARE_CONNECT_TIMEOUT_S) as conn:
            yield conn

    @contextlib.contextmanager
    def _lend(self, connect_timeout: float | None) -> Iterator[psycopg.Connection[Any]]:
        """With a slot already taken: a checked-out connection, given back (and the slot freed) afterwards."""
        try:
            conn, born = self._checkout(connect_timeout)
        except BaseException:
            self._slots.release()
            raise
        try:
            with held():
                yield conn
        finally:
            self._return(conn, born)
            self._slots.release()

    def _open(self, connect_timeout: float | None) -> psycopg.Connection[Any]:
        kwargs = dict(self.kwargs)
        if connect_timeout is not None:
            kwargs["connect_timeout"] = max(1, round(connect_timeout))
        conn = psycopg.connect(**kwargs)
        self.opened += 1
        return conn

    def _checkout(self, connect_timeout: float | None) -> tuple[psycopg.Connection[Any], float]:
        while True:
            with self._lock:
                item = self._idle.pop() if self._idle else None
            if item is None:
                conn = self._open(connect_timeout)
                self._start_janitor()
                return conn, time.monotonic()
            conn, born, returned = item
            if usable(conn, born, returned, self.idle_s):
                return conn, born
            self.discarded += 1
            _close(conn)

    def _return(self, conn: psycopg.Connection[Any], born: float) -> None:
        keep = (not self.closed and not conn.closed and not conn.broken and conn.autocommit
                and conn.info.transaction_status == TransactionStatus.IDLE
                and time.monotonic() - born < MAX_LIFETIME_S)
        if not keep:
            _close(conn)
            return
        with self._lock:
            self._idle.append((conn, born, time.monotonic()))

    def close(self) -> None:
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _, _ in idle:
            _close(conn)

    def idle_count(self) -> int:
        return len(self._idle)

    def _start_janitor(self) -> None:
        # Closes connections idle past DB_POOL_IDLE_S even when no request comes (a self-hosted server at night).
        if self._janitor is None:
            self._janitor = threading.Thread(target=self._sweep, name="db-pool-janitor", daemon=True)
            self._janitor.start()

    def _sweep(self) -> None:
        while not self.closed:
            time.sleep(max(0.5, self.idle_s / 2))
            now = time.monotonic()
            with self._lock:
                stale = [item for item in self._idle if now - item[2] >= self.idle_s]
                self._idle = [item for item in self._idle if now - item[2] < self.idle_s]
            for conn, _, _ in stale:
                _close(conn)


def usable(conn: psycopg.Connection[Any], born: float, returned: float, idle_s: float) -> bool:
    """The checkout's health check, without a round trip."""
    now = time.monotonic()
    if conn.closed or conn.broken or now - returned >= idle_s or now - born >= MAX_LIFETIME_S:
        return False
    if conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        # An idle backend says nothing unprompted: readable means it sent its FATAL and closed (terminated,
        # restarted, timed out by a pooler) or the socket is at EOF. Such a connection is never handed out.
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


def _close(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except Exception as exc:  # closing a dead connection must not fail the request that found it dead
        log.debug("closing a pooled connection failed: %s", type(exc).__name__)
