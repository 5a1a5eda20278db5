"""`cache stats` (hit rate per cache, keys and memory per prefix) and `cache clear [--prefix P]`."""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from typing import Any

from scripts import _guards

BATCH = 500
MEMORY_SAMPLE = 1_000  # keys per prefix asked for MEMORY USAGE; beyond that the total is extrapolated


def register(groups: argparse._SubParsersAction) -> None:
    cache = groups.add_parser("cache", help="the Redis cache").add_subparsers(dest="command", required=True)
    stats = cache.add_parser("stats", help="hit rate per cache, keys and memory per key prefix")
    stats.add_argument("--since", default="24h", help="window for the hit rates (default 24h)")
    stats.set_defaults(func=cmd_stats)
    clear = cache.add_parser("clear", help="delete cached keys (all of them, or those starting with --prefix)")
    clear.add_argument("--prefix", default="", help="e.g. 'asst:' for cached assistants")
    _guards.add_override(clear, "the Redis host (needed to delete every key anywhere but the local stack)")
    clear.set_defaults(func=cmd_clear)


def cmd_stats(args: argparse.Namespace) -> int:
    print_hit_rates(args.since)
    from shared.core.kv import get_kv

    kv = get_kv()
    keys = kv.scan("*")
    prefixes: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        prefixes[key.split(":", 1)[0] if ":" in key else "(no prefix)"].append(key)
    memory = {prefix: key_memory(kv, names) for prefix, names in prefixes.items()}
    print(f"\nkeys by prefix (SCAN)\n{'prefix':24} {'keys':>8} {'memory':>12}")
    for prefix in sorted(prefixes, key=lambda p: -len(prefixes[p])):
        print(f"{prefix[:24]:24} {len(prefixes[prefix]):>8} {memory[prefix]:>12}")
    print(f"{'total':24} {len(keys):>8}")
    print(f"\nmemory: {server_memory(kv)}")
    return 0


def print_hit_rates(since: str) -> None:
    from shared.core import metrics
    from shared.core.db import connect

    start, end, _ = metrics.window(since, "now", "1d")
    try:
        with connect() as conn:
            rows = conn.execute("""
                SELECT coalesce(metadata->>'cache', '?') AS cache, count(*) FILTER (WHERE name = 'cache.hit') AS hits,
                       count(*) FILTER (WHERE name = 'cache.miss') AS misses
                FROM performance_metrics
                WHERE name IN ('cache.hit', 'cache.miss') AND "timestamp" >= %s AND "timestamp" < %s
                GROUP BY 1 ORDER BY 1""", (start, end)).fetchall()
    except Exception as exc:  # Redis figures are still worth printing without the database
        print(f"hit rates: not available ({getattr(exc, 'message', None) or type(exc).__name__})")
        return
    print(f"hit rate since {since} (cache.hit / cache.miss metrics)")
    print(f"{'cache':24} {'hits':>8} {'misses':>8} {'rate':>7}")
    if not rows:
        print("(no cache lookups recorded in this window)")
    for row in rows:
        total = row["hits"] + row["misses"]
        print(f"{row['cache'][:24]:24} {row['hits']:>8} {row['misses']:>8} {100 * row['hits'] / total:>6.1f}%")


def key_memory(kv: Any, keys: list[str]) -> str:
    """Bytes the keys use (MEMORY USAGE), or 'n/a' where the server refuses the command."""
    sample = keys[:MEMORY_SAMPLE]
    total = 0
    try:
        for i in range(0, len(sample), BATCH):
            total += sum(int(v or 0) for v in kv.pipeline([["MEMORY", "USAGE", k] for k in sample[i:i + BATCH]]))
    except Exception:
        return "n/a"
    if len(keys) > len(sample):
        return "~" + human_bytes(total * len(keys) / len(sample))
    return human_bytes(total)


def server_memory(kv: Any) -> str:
    """used / peak / max from INFO memory, else the key count from DBSIZE, else why not."""
    try:
        (info,) = kv.pipeline([["INFO", "memory"]])
        fields = info if isinstance(info, dict) else dict(  # redis-py parses INFO; REST hands back the text
            line.split(":", 1) for line in str(info).splitlines() if ":" in line)
        used = f"used {fields['used_memory_human']} (peak {fields.get('used_memory_peak_human', '?')}"
        limit = int(fields.get("maxmemory", 0) or 0)
        return used + (f", max {human_bytes(limit)})" if limit else ", no maxmemory)") + " from INFO memory"
    except Exception as exc:
        reason = type(exc).__name__
    try:
        (size,) = kv.pipeline([["DBSIZE"]])
        return f"INFO memory not available ({reason}); DBSIZE says {size} keys"
    except Exception:
        return f"not available: the server refused INFO and DBSIZE ({reason})"


def cmd_clear(args: argparse.Namespace) -> int:
    from shared.core.kv import get_kv

    endpoint = _guards.redis_endpoint()  # none configured: get_kv() below says which variables to set
    if not args.prefix and endpoint:  # every key: rate-limit windows, spend counters and job dedup ids too
        host = _guards.redis_host(endpoint)
        try:
            _guards.require_local(_guards.redis_is_local_stack(endpoint), action="cache clear deletes every key "
                                  "(rate limits, daily spend, job dedup ids included)", target=f"Redis at {host}",
                                  name=host, override=args.allow_remote)
        except _guards.NotLocal as exc:
            print(f"{exc}\n(`cache clear --prefix asst:` and other prefixes work anywhere)", file=sys.stderr)
            return 2
    kv = get_kv()
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", args.prefix) + "*"  # the prefix is literal, not a glob
    keys = kv.scan(pattern)
    deleted = sum(kv.delete(*keys[i:i + BATCH]) for i in range(0, len(keys), BATCH))
    print(f"deleted {deleted} keys" + (f" starting with {args.prefix!r}" if args.prefix else " (all keys)"))
    return 0


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
