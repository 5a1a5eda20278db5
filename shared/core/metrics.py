"""Performance metrics (the runbook's PerformanceMonitor): buffered per process, written after the response.

track_metric() only appends to an in-memory list; the list is written in one INSERT on a pooled connection
when it is large, right after each HTTP response has been sent, at most one write per request
(MetricsMiddleware: a serverless function may be frozen once it has answered, so waiting for a later
request could lose points), and at interpreter exit.
Nothing here ever raises into the caller: a metric is never worth a failed request.
Responses anyone can cause without a key (401, 405, 404 of no route, liveness pings) are only counted in
memory and written as http.request_count points along with the next real flush: a flood of them must not
cost a database connection each.
Metric names in use: http.request_ms, http.request_count, job.duration_ms, job.failed, cache.hit, cache.miss,
db.slow_query_ms and the chat engine's chat.ttft_ms, chat.total_ms, chat.retrieval_ms, chat.tokens_in,
chat.tokens_out, chat.failover.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from psycopg.rows import dict_row
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.core.errors import BadRequest
from shared.core.settings import get_settings

log = logging.getLogger("dialog_engine.metrics")

FLUSH_AT = 200  # points that make track_metric start a flush on its own (long jobs, batch scripts)
MAX_BUFFER = 10_000  # with the database down for long, the oldest points go rather than the memory
MAX_BUCKETS = 2_000
DEFAULT_SLOW_QUERY_MS = 200.0

Point = tuple[str, float, datetime, str, "str | None"]
_buffer: list[Point] = []
_lock = threading.Lock()  # guards _buffer (sync routes and jobs record from worker threads)
_done = threading.Condition(_lock)  # flush(wait=True) waits on it for flushes of other threads
_in_flight = 0  # flushes writing right now (guarded by _lock)
_last_warning = 0.0
_flusher_started = False  # one background flusher at a time, however fast points arrive

UNMETERED_STATUSES = frozenset({401, 405})  # no or a wrong key, wrong method; also a 404 matching no route
UNMETERED_SCOPE_KEY = "dialog_engine.unmetered"
MAX_COUNTED = 500  # distinct (route, method, status) counters; the rest are folded into one
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_counts: Counter[tuple[str, str, int]] = Counter()  # guarded by _lock


def track_metric(name: str, value: float, metadata: dict[str, Any] | None = None,
                 workspace_id: str | None = None) -> None:
    """Record one point (now) for `name`; cheap, buffered, never raises.

    workspace_id ties the point to a workspace (its admins see it in /api/metrics); None = engine-wide,
    visible to operators only (`python -m scripts metrics show`).
    """
    try:
        number = float(value)
        if not math.isfinite(number):
            return  # NaN or infinity would poison every average of the bucket
        point = (str(name)[:200], number, datetime.now(UTC),
                 json.dumps(metadata or {}, default=str, separators=(",", ":")), workspace_id)
        global _flusher_started
        with _lock:
            _buffer.append(point)
            if len(_buffer) > MAX_BUFFER:
                del _buffer[: len(_buffer) - MAX_BUFFER]
            start_flusher = len(_buffer) >= FLUSH_AT and not _flusher_started
            _flusher_started = _flusher_started or start_flusher
        if start_flusher:  # in the background: a batch job's loop must not wait for the database either
            threading.Thread(target=_background_flush, name="metrics-flush", daemon=True).start()
    except Exception as exc:
        _warn(f"metric {name!r} not recorded: {type(exc).__name__}")


def count_cache(cache_name: str, hit: bool, workspace_id: str | None = None) -> None:
    """One cache lookup: cache.hit or cache.miss with metadata {cache}; `cache stats` turns them into hit rates."""
    track_metric("cache.hit" if hit else "cache.miss", 1, {"cache": cache_name}, workspace_id)


def note_query(sql: Any, started: float) -> None:
    """Called by shared.core.db's helpers: a statement slower than SLOW_QUERY_MS becomes a db.slow_query_ms point."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    try:
        threshold = get_settings().slow_query_ms
    except Exception:  # settings errors surface elsewhere; timing must never fail a query
        threshold = DEFAULT_SLOW_QUERY_MS
    if elapsed_ms >= threshold:
        text = sql if isinstance(sql, str) else repr(sql)
        # The statement text has placeholders, never the values: no user data or secrets end up here.
        track_metric("db.slow_query_ms", elapsed_ms, {"sql": " ".join(text.split())[:1000]})


def pending() -> int:
    """How many points wait in this process's buffer."""
    return len(_buffer)


def unmetered(scope: Scope) -> None:
    """Mark this request as one to count in memory only (a liveness answer: no database session at all)."""
    scope[UNMETERED_SCOPE_KEY] = True


def count_request(route: str, method: str, status: int) -> None:
    """One cheap request, counted in memory; bounded whatever routes and methods a caller makes up."""
    key = (route, method if method in METHODS else "OTHER", int(status))
    with _lock:
        if key not in _counts and len(_counts) >= MAX_COUNTED:
            key = ("other", "OTHER", int(status))
        _counts[key] += 1


def _counted_points() -> list[Point]:
    """The counters as http.request_count points (value = requests since the last flush); resets them."""
    with _lock:
        counts = list(_counts.items())
        _counts.clear()
    now = datetime.now(UTC)
    return [("http.request_count", float(n), now, json.dumps({"route": r, "method": m, "status": s},
                                                             separators=(",", ":")), None)
            for (r, m, s), n in counts]


def flush(wait: bool = False) -> int:
    """Write what is buffered now in one INSERT; returns how many points this call wrote. Never raises.

    Each call takes the points buffered when it starts (those of concurrent requests too) and writes
    them in one statement on a pooled connection: one write per request at most, however many flushes
    overlap; points recorded meanwhile go with the next flush. wait=True (exit, scripts, tests) also
    waits for flushes running in other threads, so every point recorded before the call is written.
    """
    global _in_flight
    if _counts and (_buffer or wait):  # the counters ride along with a real write, never cause one
        points = _counted_points()
        with _lock:
            _buffer.extend(points)
    with _lock:
        points = _buffer[:]
        _buffer.clear()
        _in_flight += bool(points)
    written = 0
    if points:
        try:
            written = _insert(points)
        finally:
            with _done:
                _in_flight -= 1
                _done.notify_all()
    if wait:
        with _done:
            _done.wait_for(lambda: _in_flight == 0, timeout=10)
    return written


def _background_flush() -> None:
    global _flusher_started
    try:
        flush()
    finally:
        _flusher_started = False


INSERT = """
    INSERT INTO performance_metrics (name, value, "timestamp", metadata, workspace_id)
    SELECT n, v, t, m::jsonb, w
    FROM unnest(%s::text[], %s::float8[], %s::timestamptz[], %s::text[], %s::text[]) AS u(n, v, t, m, w)"""


def _insert(points: list[Point]) -> int:
    from shared.core.db import connect  # shared.core.db imports this module (note_query)

    try:
        # A pooled connection (the request's has been given back by now); a short wait for a new one, after
        # the response anyway.
        with connect(connect_timeout=3) as conn:
            conn.execute(INSERT, [list(column) for column in zip(*points, strict=True)])
        return len(points)
    except Exception as exc:
        _warn(f"{len(points)} metric points dropped: {type(exc).__name__}")
        return 0


def _warn(message: str) -> None:
    global _last_warning
    if time.monotonic() - _last_warning > 60:  # a database outage must not flood the logs
        _last_warning = time.monotonic()
        log.warning(message)


atexit.register(flush, True)


class MetricsMiddleware:
    """Records http.request_ms {route, method, status} when the last body byte is sent, then flushes.

    The flush runs after the response is complete (the client has it already), in a worker thread so
    the event loop keeps serving. Under Mangum (AWS Lambda) the response is returned only when the app
    returns, so there the flush adds its few ms to the response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status, recorded = 500, False

        async def timed_send(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and not recorded:
                recorded = True
                _record_request(scope, status, started)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not recorded:  # the app raised, or the client went away mid-stream
                _record_request(scope, status, started)
            if _buffer:  # never for a request that recorded nothing (401, 404 of no route, liveness)
                with anyio.CancelScope(shield=True):  # a disconnected client must not cancel the write
                    await anyio.to_thread.run_sync(flush)


def _record_request(scope: Scope, status: int, started: float) -> None:
    # The route template (/api/keys/{key_id}), never the raw path: bounded names, no ids in metadata.
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    # A 404 from a route ran its handler (and its key check): timed like any other answer.
    if status in UNMETERED_STATUSES or (status == 404 and route == "unmatched") or scope.get(UNMETERED_SCOPE_KEY):
        count_request(route, str(scope.get("method")), status)
        return
    track_metric("http.request_ms", (time.perf_counter() - started) * 1000,
                 {"route": route, "method": scope.get("method"), "status": status})


# Reading them back --------------------------------------------------------------------------------------

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """'30s', '5m' (minutes), '1h', '1d', '1w' -> timedelta; BadRequest otherwise."""
    match = DURATION.match(text or "")
    try:
        size = timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)]) if match else None
    except OverflowError:  # more days than a timedelta holds (about 2.7 million years)
        size = None
    if size is None or size < timedelta(seconds=1):
        raise BadRequest(f"{text!r} is not a duration like 30s, 5m, 1h, 1d or 1w.", code="invalid_duration")
    return size


def parse_time(text: str | None, default: datetime, now: datetime | None = None) -> datetime:
    """ISO 8601 (UTC when no zone is given), 'now', or relative to now: '-24h' / '24h' (both in the past)."""
    now = now or datetime.now(UTC)
    if not text:
        return default
    text = text.strip()
    if text.lower() == "now":
        return now
    try:
        if DURATION.match(text.lstrip("-")):
            return now - parse_duration(text.lstrip("-"))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except (ValueError, OverflowError, BadRequest):  # OverflowError: further back than the year 1
        raise BadRequest(f"{text!r} is not a time: use ISO 8601, 'now' or a relative time like -24h.",
                         code="invalid_time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window(start: str | None, end: str | None, bucket: str = "1h") -> tuple[datetime, datetime, timedelta]:
    """Validated (start, end, bucket); the default window is the last 24 hours."""
    now = datetime.now(UTC)
    end_at = parse_time(end, now, now)
    if end_at < datetime(1, 1, 2, tzinfo=UTC):  # the default start, a day earlier, must exist
        raise BadRequest(f"{end!r} is too far in the past.", code="invalid_time")
    start_at = parse_time(start, end_at - timedelta(hours=24), now)
    size = parse_duration(bucket)
    if start_at >= end_at:
        raise BadRequest("start must be before end.", code="invalid_time_range")
    if (end_at - start_at) / size > MAX_BUCKETS:
        raise BadRequest(f"That is more than {MAX_BUCKETS} buckets; choose a larger bucket or a shorter range.",
                         code="too_many_buckets")
    return start_at, end_at, size


# workspace_id=None means every row (operators); the API always passes the caller's workspace.
WHERE = """name = %(name)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s
           AND (%(ws)s::text IS NULL OR workspace_id = %(ws)s)"""


def get_metrics(conn: psycopg.Connection[Any], name: str, start: datetime, end: datetime, *,
                workspace_id: str | None, limit: int = 10_000) -> list[dict[str, Any]]:
    """Raw points of `name` in [start, end), oldest first."""
    return conn.cursor(row_factory=dict_row).execute(f"""
        SELECT "timestamp", value, metadata, workspace_id FROM performance_metrics
        WHERE {WHERE} ORDER BY "timestamp" LIMIT %(limit)s""",
        {"name": name, "start": start, "end": end, "ws": workspace_id, "limit": limit}).fetchall()


def aggregate(conn: psycopg.Connection[Any], name: str, start: datetime, end: datetime, bucket: timedelta, *,
              workspace_id: str | None) -> list[dict[str, Any]]:
    """Per non-empty bucket: start, count, avg, p50, p95, p99 (continuous percentiles, as PostgreSQL computes)."""
    rows = conn.cursor(row_factory=dict_row).execute(f"""
        SELECT date_bin(%(bucket)s, "timestamp", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS start,
               count(*) AS count, avg(value) AS avg,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value) AS pct
        FROM performance_metrics WHERE {WHERE} GROUP BY 1 ORDER BY 1""",
        {"name": name, "start": start, "end": end, "ws": workspace_id, "bucket": bucket}).fetchall()
    return [{"start": r["start"], "count": r["count"], "avg": r["avg"],
             "p50": r["pct"][0], "p95": r["pct"][1], "p99": r["pct"][2]} for r in rows]


def list_names(conn: psycopg.Connection[Any], start: datetime, end: datetime, *,
               workspace_id: str | None) -> list[dict[str, Any]]:
    """Metric names seen in [start, end) with their point counts."""
    return conn.cursor(row_factory=dict_row).execute("""
        SELECT name, count(*) AS count, min("timestamp") AS first, max("timestamp") AS last
        FROM performance_metrics
        WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s AND (%(ws)s::text IS NULL OR workspace_id = %(ws)s)
        GROUP BY name ORDER BY name""", {"start": start, "end": end, "ws": workspace_id}).fetchall()
