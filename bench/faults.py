"""Chat under faults, as figures: the fault suite's run (tests/faults/chat_chaos.py) on a stack of its own.

    python bench/faults.py [--turns 300] [--workers 8] [--fault-rate 0.3] [--seed 1] [--concurrent 64]

Starts a local stack (PostgreSQL, Redis, the Upstash and QStash stand-ins) in a temporary folder, the
OpenAI and Anthropic stand-ins failing at random (5xx, 529, 429, dropped mid-stream), a fault proxy in
front of the Upstash REST endpoint (refusing or stalling for windows) and a thread that kills the
engine's PostgreSQL connections while answers stream; serves the whole router in this process and
sends streaming turns. Prints: turns, acknowledged, lost, duplicated, unfinished, store_failed, bare 5xx,
failovers, p50/p99 first byte (ms); then the same for `--concurrent` turns started at once, no faults.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import create_database, local_stack  # noqa: E402

REPLY = "A short answer that streams in a dozen small pieces, so faults land mid-answer."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of model calls that fail")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrent", type=int, default=64)
    args = parser.parse_args()

    import psycopg
    from psycopg.rows import dict_row

    from scripts._serve import serve_in_thread

    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PINECONE_API_KEY", "REDIS_URL", "SENTRY_DSN"):
        os.environ.pop(name, None)  # never a developer's real services
    with local_stack("bench-faults-", qstash_backoff_scale=0.01) as stack:
        stops = []
        try:
            admin_dsn = stack.pg.get_uri()
            dsn = create_database(stack, "bench_faults")

            from tests.fakes.anthropic_server import FakeAnthropic
            from tests.fakes.fault_proxy import FaultProxy
            from tests.fakes.openai_server import FakeOpenAI, FaultPlan

            openai, anthropic = FakeOpenAI(), FakeAnthropic()
            openai_url, stop = serve_in_thread(openai.app)
            stops.append(stop)
            anthropic_url, stop = serve_in_thread(anthropic.app)
            stops.append(stop)
            upstash = urlsplit(os.environ["UPSTASH_REDIS_REST_URL"])
            proxy = FaultProxy(upstash.hostname or "127.0.0.1", upstash.port or 80)
            stops.append(proxy.stop)
            os.environ.update({
                "DATABASE_URL": dsn, "ENVIRONMENT": "development",
                "OPENAI_API_KEY": openai.api_key, "OPENAI_BASE_URL": f"{openai_url}/v1",
                "ANTHROPIC_API_KEY": anthropic.api_key, "ANTHROPIC_BASE_URL": anthropic_url,
                "UPSTASH_REDIS_REST_URL": f"{upstash.scheme}://127.0.0.1:{proxy.port}",
                "RATE_CHAT_PER_KEY_PER_MINUTE": "0", "RATE_CHAT_PER_USER_PER_MINUTE": "0", "DAILY_TOKEN_BUDGET": "0",
                "LLM_FIRST_TOKEN_TIMEOUT_S": "2", "REDIS_TIMEOUT_S": "0.5", "REDIS_BREAKER_S": "1"})

            from shared.core import kv, settings

            settings.get_settings.cache_clear()  # the environment changed after the stack started
            kv.get_kv.cache_clear()
            from scripts.router import create_router
            from shared.guard.auth import create_workspace

            url, stop = serve_in_thread(create_router())
            stops.append(stop)
            with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
                workspace, key = create_workspace(conn, "bench")
                assistant = conn.execute("""INSERT INTO assistants (workspace_id, name, template_id, overrides)
                                            VALUES (%s, 'Helper', 'default', '{"retrieval": {"mode": "keyword"}}')
                                            RETURNING id""", (workspace["id"],)).fetchone()["id"]

            from tests.faults.chat_chaos import Chaos, audit, concurrent_turns, run_turns

            for n, fake in enumerate((openai, anthropic)):
                fake.reply, fake.chunk_chars, fake.delay = REPLY, 7, 0.01
                fake.faults = FaultPlan(args.seed + n, rate=args.fault_rate)
            with Chaos(args.seed, proxy, admin_dsn, dsn) as chaos:
                results = run_turns(url, key, assistant, turns=args.turns, workers=args.workers, seed=args.seed)
            print(audit(results, dsn, chaos.counts).line())

            for fake in (openai, anthropic):
                fake.faults = None
            if args.concurrent:
                print(f"{args.concurrent} concurrent, no faults: "
                      + audit(concurrent_turns(url, key, assistant, args.concurrent), dsn).line())
        finally:
            for stop in reversed(stops):
                stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
