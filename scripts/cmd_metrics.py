"""`metrics show [NAME] [--since 24h] [--bucket 1h]`: a table per bucket and a terminal chart, all workspaces."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

BLOCKS = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉"
SPARK_WIDTH = 60
SCOPE = """"timestamp" >= %(start)s AND "timestamp" < %(end)s AND (%(ws)s::text IS NULL OR workspace_id = %(ws)s)"""
SUMMARY = f"""
    SELECT name, count(*) AS count, avg(value) AS avg,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value) AS pct
    FROM performance_metrics WHERE {SCOPE} GROUP BY name ORDER BY name"""
BY_KEY = f"""
    SELECT coalesce(metadata->>%(key)s, '-') AS name, count(*) AS count, avg(value) AS avg,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value) AS pct
    FROM performance_metrics WHERE name = %(name)s AND {SCOPE} GROUP BY 1 ORDER BY count(*) DESC, 1"""
COUNTS = f"""
    SELECT name, date_bin(%(bucket)s, "timestamp", TIMESTAMPTZ '2000-01-01 00:00:00+00') AS start, count(*) AS count
    FROM performance_metrics WHERE {SCOPE} GROUP BY 1, 2"""


def register(groups: argparse._SubParsersAction) -> None:
    metrics = groups.add_parser("metrics", help="performance metrics").add_subparsers(dest="command", required=True)
    show = metrics.add_parser("show", help="aggregates per bucket for NAME, or a summary of every metric")
    show.add_argument("name", nargs="?", help="e.g. http.request_ms (omit for all names)")
    show.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d, or an ISO time (default 24h)")
    show.add_argument("--until", default="now", help="end of the window (default now)")
    show.add_argument("--bucket", default="1h", help="bucket size: 1m, 5m, 1h, 1d (default 1h)")
    show.add_argument("--by", metavar="KEY", help="with NAME: one row per metadata value, e.g. --by route")
    show.add_argument("--workspace", default=None, help="only this workspace's points (default: all, engine-wide too)")
    show.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    from shared.core import metrics
    from shared.core.db import connect

    start, end, size = metrics.window(args.since, args.until, args.bucket)  # "24h" = 24 hours ago
    scope = f"workspace {args.workspace}" if args.workspace else "all workspaces"
    print(f"{_when(start)} .. {_when(end)} UTC, bucket {args.bucket}, {scope}")
    with connect() as conn:
        if args.name and args.by:
            rows = conn.execute(BY_KEY, {"start": start, "end": end, "ws": args.workspace, "name": args.name,
                                         "key": args.by}).fetchall()
            print_table(f"{args.name} by {args.by}", rows)
            return 0
        if args.name:
            series = metrics.aggregate(conn, args.name, start, end, size, workspace_id=args.workspace)
            print_series(args.name, series, start, end, size)
            return 0
        names = conn.execute(SUMMARY, {"start": start, "end": end, "ws": args.workspace}).fetchall()
        counts = conn.execute(COUNTS, {"start": start, "end": end, "ws": args.workspace, "bucket": size}).fetchall()
    if not names:
        print("no metrics recorded in this window")
        return 0
    print_table("name", names, [sparkline(_filled([c for c in counts if c["name"] == row["name"]], start, end,
                                                  size, "count")) for row in names], "count per bucket")
    return 0


def print_table(title: str, rows: list[dict[str, Any]], extra: list[str] | None = None, extra_title: str = "") -> None:
    """One line per row of SUMMARY-shaped results (name, count, avg, pct[p50, p95, p99])."""
    print(f"\n{title[:32]:32} {'count':>7} {'avg':>9} {'p50':>9} {'p95':>9} {'p99':>9}  {extra_title}".rstrip())
    for i, row in enumerate(rows):
        print(f"{str(row['name'])[:32]:32} {row['count']:>7} {_num(row['avg']):>9} {_num(row['pct'][0]):>9} "
              f"{_num(row['pct'][1]):>9} {_num(row['pct'][2]):>9}  {extra[i] if extra else ''}".rstrip())


def print_series(name: str, series: list[dict[str, Any]], start: datetime, end: datetime, size: timedelta) -> None:
    if not series:
        print(f"{name}: no points in this window")
        return
    print(f"\n{name}")
    print(f"{'bucket (UTC)':16} {'count':>7} {'avg':>9} {'p50':>9} {'p95':>9} {'p99':>9}  p95")
    top = max(p["p95"] for p in series) or 1.0
    for point in series:
        print(f"{_when(point['start']):16} {point['count']:>7} {_num(point['avg']):>9} {_num(point['p50']):>9} "
              f"{_num(point['p95']):>9} {_num(point['p99']):>9}  {bar(point['p95'] / top)}")
    print(f"\navg   {sparkline(_filled(series, start, end, size, 'avg'))}")
    print(f"count {sparkline(_filled(series, start, end, size, 'count'))}   (one column per bucket, blank = no data)")


def _filled(series: list[dict[str, Any]], start: datetime, end: datetime, size: timedelta,
            key: str) -> list[float | None]:
    """One value per bucket across the whole window, None where there was no point."""
    by_start = {p["start"]: p[key] for p in series}
    origin = datetime(2000, 1, 1, tzinfo=UTC)  # the same origin as date_bin in shared.core.metrics
    moment = origin + ((start - origin) // size) * size
    values = []
    while moment < end:
        values.append(by_start.get(moment))
        moment += size
    return values


def sparkline(values: list[float | None], width: int = SPARK_WIDTH) -> str:
    """▁▂▃▅█ scaled to the largest value; several buckets share a column (their max) past `width`."""
    if len(values) > width:
        step = -(-len(values) // width)
        groups = [[v for v in values[i:i + step] if v is not None] for i in range(0, len(values), step)]
        values = [max(g) if g else None for g in groups]
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(min(present), 0.0), max(present)
    span = (high - low) or 1.0
    return "".join(" " if v is None else BLOCKS[min(7, int((v - low) / span * 7.999))] for v in values)


def bar(fraction: float, width: int = 20) -> str:
    eighths = max(0, min(width * 8, round(fraction * width * 8)))
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.2f}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
