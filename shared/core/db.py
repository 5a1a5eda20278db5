"""PostgreSQL through psycopg 3: connections from a small per-process pool, errors translated in one place.

A warm instance reuses its connections (shared.core.db_pool: none kept idle past DB_POOL_IDLE_S, each
checkout health-checked); DB_POOL_SIZE=0 opens and closes one per use instead. A route holds a connection
only while it runs statements: a chat turn gives it back before the answer streams. Behind a
transaction-mode pooler server-side prepared statements break, so they are off for pooled URLs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from shared.core.db_pool import Pool, PoolBusy
from shared.core.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from shared.core.metrics import note_query
from shared.core.settings import get_settings

log = logging.getLogger("dialog_engine.db")
CONNECT_TIMEOUT_S = 10  # opening a connection, unless the caller bounds it tighter

Row = dict[str, Any]
# Where long work gets a connection for each of its database steps, so it holds none while it waits on the
# network: `connect` itself, or `on(conn)` for a caller that must keep its own (e.g. inside its transaction).
Connections = Callable[[], contextlib.AbstractContextManager[psycopg.Connection[Row]]]


def on(conn: psycopg.Connection[Row]) -> Connections:
    """Connections that are all `conn`."""
    return lambda: contextlib.nullcontext(conn)


def _connect_kwargs() -> dict[str, Any]:
    settings = get_settings()
    return {
        "conninfo": settings.database_url,
        "autocommit": True,
        "row_factory": dict_row,
        # None = never prepare server-side: required behind pgbouncer in transaction mode.
        "prepare_threshold": None if settings.database_is_pooled else 5,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }


_pools: dict[tuple[str, int, float, float], Pool] = {}
_pools_lock = threading.Lock()


def get_pool() -> Pool | None:
    """This process's pool for DATABASE_URL (None with DB_POOL_SIZE=0). A changed URL (tests switch
    databases) closes the pools of the others."""
    settings = get_settings()
    if settings.db_pool_size <= 0:
        return None
    key = (settings.database_url, settings.db_pool_size, settings.db_pool_idle_s, settings.db_pool_wait_s)
    pool = _pools.get(key)
    if pool is not None:
        return pool
    with _pools_lock:
        if key not in _pools:
            for old in [k for k in _pools if k != key]:
                _pools.pop(old).close()
            _pools[key] = Pool(_connect_kwargs(), settings.db_pool_size, settings.db_pool_idle_s,
                               settings.db_pool_wait_s)
        return _pools[key]


@contextlib.contextmanager
def spare_connection() -> Iterator[psycopg.Connection[Row] | None]:
    """A pooled connection without waiting for a slot (Pool.spare), or None when every slot is taken; with
    DB_POOL_SIZE=0, a fresh one. For work beside the caller's own connection, which must never wait on it."""
    pool = get_pool()
    if pool is None:
        with connect() as conn:
            yield conn
        return
    with pool.spare() as conn:
        if conn is None:
            yield None
            return
        with translate_errors():
            yield conn


def close_pools() -> None:
    """Close every pooled connection of this process (shutdown; tests that clone a database as a template,
    which PostgreSQL refuses while anyone is connected to it)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


@contextlib.contextmanager
def connect(connect_timeout: float | None = None, fresh: bool = False) -> Iterator[psycopg.Connection[Row]]:
    """A connection in autocommit mode; use `with conn.transaction():` for several statements.

    Pooled unless DB_POOL_SIZE=0 or `fresh` (a health check must see whether new connections work);
    `connect_timeout` bounds opening a new one (a retry inside a request can't wait the default 10 s).
    Don't close it: leaving the block gives it back.
    """
    pool = None if fresh else get_pool()
    try:
        with contextlib.ExitStack() as stack:
            try:
                if pool is not None:
                    conn = stack.enter_context(pool.connection(connect_timeout))
                else:
                    conn = stack.enter_context(_fresh(connect_timeout))
            except psycopg.OperationalError as exc:
                log.error("database unreachable: %s", type(exc).__name__)
                raise ServiceUnavailable("The database is unreachable; try again shortly.",
                                         code="database_unavailable") from None  # the chain may name the host
            with translate_errors():
                yield conn
    except PoolBusy:
        log.error("every pooled database connection stayed busy (DB_POOL_SIZE)")
        raise ServiceUnavailable("The database is busy; try again shortly.", code="database_busy") from None


@contextlib.contextmanager
def _fresh(connect_timeout: float | None) -> Iterator[psycopg.Connection[Row]]:
    kwargs = _connect_kwargs()
    if connect_timeout is not None:
        kwargs["connect_timeout"] = max(1, round(connect_timeout))
    with psycopg.connect(**kwargs) as conn:
        yield conn


def get_db() -> Iterator[psycopg.Connection[Row]]:
    """FastAPI dependency: the request's connection, closed when the response is done."""
    with connect() as conn:
        yield conn


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """psycopg errors -> our errors, so routes never answer 500 for a constraint a user can break."""
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        raise Conflict("That already exists.", details={"constraint": exc.diag.constraint_name}) from exc
    except pg_errors.ForeignKeyViolation as exc:
        raise NotFound("A referenced record does not exist.",
                       details={"constraint": exc.diag.constraint_name}) from exc
    except (pg_errors.CheckViolation, pg_errors.NotNullViolation, pg_errors.InvalidTextRepresentation,
            pg_errors.StringDataRightTruncation, pg_errors.NumericValueOutOfRange) as exc:
        raise Unprocessable("A value is not acceptable.", details={"constraint": exc.diag.constraint_name}) from exc
    except pg_errors.UntranslatableCharacter as exc:
        raise Unprocessable("Text may not contain NUL (\\u0000) characters.", code="nul_character",
                            details={"constraint": exc.diag.constraint_name}) from None
    except psycopg.DataError as exc:
        # Raised by psycopg itself, before the statement is sent: PostgreSQL text can't hold NUL.
        if "NUL" not in str(exc):
            raise
        raise Unprocessable("Text may not contain NUL (\\u0000) characters.", code="nul_character") from None
    except UnicodeEncodeError:
        # JSON may carry "\\ud800" (an unpaired surrogate): Python keeps it, UTF-8 (and so PostgreSQL) can't.
        raise Unprocessable("Text must be valid Unicode: unpaired surrogates (\\ud800-\\udfff) are not allowed.",
                            code="invalid_unicode") from None
    except psycopg.OperationalError as exc:
        log.error("database error: %s", type(exc).__name__)
        raise ServiceUnavailable("The database is unreachable; try again shortly.",
                                 code="database_unavailable") from None


def fetch_one(conn: psycopg.Connection[Row], sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
    started = time.perf_counter()
    try:
        return conn.execute(sql, params).fetchone()
    finally:
        note_query(sql, started)  # slower than SLOW_QUERY_MS -> `db slow-queries` lists it


def fetch_all(conn: psycopg.Connection[Row], sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
    started = time.perf_counter()
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        note_query(sql, started)


def execute(conn: psycopg.Connection[Row], sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
    """Run a statement and return the number of rows it touched."""
    started = time.perf_counter()
    try:
        return conn.execute(sql, params).rowcount
    finally:
        note_query(sql, started)
