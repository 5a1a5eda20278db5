"""`health [db|redis|queue|vectors|llm|all]` and `redis test`: what /api/health says, with exit codes."""

from __future__ import annotations

import argparse
import time
import uuid

from shared.ops.health import CHECKS, run_checks


def register(groups: argparse._SubParsersAction) -> None:
    health = groups.add_parser("health", help="check dependencies (exit 1 when a required one is down)")
    health.add_argument("target", nargs="?", default="all", choices=[*CHECKS, "pinecone", "all"])
    health.set_defaults(func=cmd_health)
    redis = groups.add_parser("redis", help="Redis tools").add_subparsers(dest="command", required=True)
    redis.add_parser("test", help="write, read, count and delete a key").set_defaults(func=cmd_redis_test)


def cmd_health(args: argparse.Namespace) -> int:
    from shared.core.settings import SettingsError, get_settings

    try:
        get_settings()
    except SettingsError as exc:  # every check would fail the same way: say it once, naming the variable
        print(f"{'settings':8} {'down':15} {0.0:8.1f} ms  {exc.message}")
        print("overall: down")
        return 1
    names = None if args.target == "all" else ["vectors" if args.target == "pinecone" else args.target]
    report = run_checks(names)
    for name, result in report["checks"].items():
        print(f"{name:8} {result['status']:15} {result['latency_ms']:8.1f} ms  {result['detail']}")
    failed = [n for n, r in report["checks"].items() if r["status"] == "down"
              or (names and r["status"] != "ok")]
    print(f"overall: {report['status']}")
    return 1 if failed or report["status"] == "down" else 0


def cmd_redis_test(args: argparse.Namespace) -> int:
    from shared.core.kv import get_kv

    kv, key = get_kv(), f"redis-test:{uuid.uuid4().hex}"
    start = time.perf_counter()
    kv.set(key, "ok", ttl=60)
    assert kv.get(key) == "ok", "read back a different value"
    assert kv.incr(key + ":n", ttl=60) == 1, "INCR did not start at 1"
    kv.delete(key, key + ":n")
    print(f"redis ok: set, get, incr, delete in {(time.perf_counter() - start) * 1000:.1f} ms")
    return 0
