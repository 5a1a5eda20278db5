"""PostgreSQL through psycopg 3: one short-lived connection per invocation, errors translated in one place.

Serverless functions can't keep a pool across invocations reliably, so each request opens one
connection (about 2 ms locally, less behind Vercel's pooler) and always closes it. Behind a
transaction-mode pooler server-side prepared statements break, so they are off for pooled URLs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from shared.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from shared.metrics import note_query
from shared.settings import get_settings

log = logging.getLogger("dialog_engine.db")

Row = dict[str, Any]


def _connect_kwargs() -> dict[str, Any]:
    settings = get_settings()
    return {
        "conninfo": settings.database_url,
        "autocommit": True,
        "row_factory": dict_row,
        # None = never prepare server-side: required behind pgbouncer in transaction mode.
        "prepare_threshold": None if settings.database_is_pooled else 5,
        "connect_timeout": 10,
    }


@contextlib.contextmanager
def connect(connect_timeout: float | None = None) -> Iterator[psycopg.Connection[Row]]:
    """A connection in autocommit mode; use `with conn.transaction():` for several statements."""
    kwargs = _connect_kwargs()
    if connect_timeout is not None:  # a retry inside a request can't wait the default 10 s
        kwargs["connect_timeout"] = max(1, round(connect_timeout))
    try:
        conn = psycopg.connect(**kwargs)
    except psycopg.OperationalError as exc:
        log.error("database unreachable: %s", type(exc).__name__)
        raise ServiceUnavailable("The database is unreachable; try again shortly.",
                                 code="database_unavailable") from None  # the chain may name the host
    try:
        with translate_errors():
            yield conn
    finally:
        conn.close()


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
