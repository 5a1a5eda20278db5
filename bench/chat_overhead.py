"""Engine time and round trips before the model: POST /api/chat against a local OpenAI stand-in answering at once.

    python bench/chat_overhead.py [--turns 300] [--chunks 0[,10000,100000]] [--configs pooled,...]
                                  [--baseline DIR] [--redis-latency-ms MS] [--keep]

Starts its own local stack (PostgreSQL + pgvector, Redis, the Upstash and QStash stand-ins) in a temporary
folder, an OpenAI chat stand-in and an embeddings stand-in, then serves the whole router (`make dev`'s
server) once per configuration, each in its own uvicorn process, and a bare one-route FastAPI SSE endpoint:
  pooled       DB_POOL_SIZE=10 (the default): a warm instance reusing its connections, Redis over Upstash REST;
  fresh        DB_POOL_SIZE=0: a new PostgreSQL connection for every use (the engine before the pool);
  self-hosted  pooled, with REDIS_URL (redis-py to Redis itself) instead of Upstash REST;
  (--redis-latency-ms holds each Upstash answer back that long: the network between a function and Upstash,
  which the local stand-in does not have; self-hosted Redis is not delayed.)
  baseline     with --baseline DIR: pooled, served from another checkout (e.g. `git worktree add DIR HEAD~1`),
               so a change is measured against the code before it in the same run, turns interleaved.
Reported as p50 / p99 over the measured turns (after a warm-up; the configurations take turns, so they share
the machine's load as it drifts):
  engine_ms  server side, from the request's first dependency to the provider request: auth, the admission
             (assistant, limits, budget, embedding cache), storing the user message, retrieval, the prompt;
  ttft_ms    server side, to the stand-in's first token (adds the SDK and the local HTTP hop);
  client     the client's time to the first `delta` event, beside the bare endpoint's in the same run.
Then a counting pass per configuration, through a PostgreSQL wire-protocol counter and a logging Upstash
stand-in (tests/fakes): SQL statements, new connections and Redis round trips per turn, before the model
request and after it, counted where they arrive (self-hosted Redis is not counted: the same KV calls, over
redis-py). Every tenth turn starts a new conversation; the others continue one (history is read).
Retrieval is the default template's hybrid mode; query vectors repeat, so they come from the caches
after first use. With --chunks, chunks are loaded with bench/retrieval.py's generator before each size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    chat_stand_ins_in_threads,
    columns,
    create_database,
    first_event,
    local_stack,
    pct,
    serve_app,
    stop_process,
)

AT_MODEL: list[tuple[int, int, int]] = []  # (statements, connections, Redis requests) when the model is asked
CONFIGS = {"pooled": {"DB_POOL_SIZE": "10"}, "fresh": {"DB_POOL_SIZE": "0"},
           "self-hosted": {"DB_POOL_SIZE": "10", "REDIS_URL": "<redis>"}}


def bare_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/sse")
    async def sse() -> StreamingResponse:
        async def events() -> Any:
            yield b'event: delta\ndata: {"text":"OK"}\n\n'
            yield b"event: done\ndata: {}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def measure(clients: dict[str, Any], bare: Any, assistant: str, texts: list[str], turns: int, warmup: int = 30
            ) -> dict[str, list[dict[str, float]]]:
    """Turns against every configuration in rotation (and the bare endpoint after each), so that all of them
    run under the same load: on a shared machine it drifts within seconds."""
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    conversations: dict[str, str | None] = dict.fromkeys(clients)
    for n in range(warmup + turns):
        for name, client in clients.items():
            body: dict[str, Any] = {"assistant_id": assistant, "message": texts[n % len(texts)]}
            if conversations[name] and n % 10:
                body["conversation_id"] = conversations[name]
            client_s, lines = first_event(client, "/api/chat", body)
            bare_s, _ = first_event(bare, "/sse", {})
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
            conversations[name] = events[0]["conversation_id"]
            done = events[-1]
            assert done["status"] == "complete" and done["provider"] == "openai", done
            if n >= warmup:
                timings = done["timings"]
                rows[name].append({"engine_ms": timings["engine_ms"], "ttft_ms": timings["ttft_ms"],
                                   "retrieval_ms": timings["retrieval_ms"], "client_ms": client_s * 1000,
                                   "bare_ms": bare_s * 1000})
    return rows


def count(client: Any, assistant: str, texts: list[str], wire: Any, upstash: Any, turns: int = 60,
          warmup: int = 10) -> dict[str, float]:
    """Mean SQL statements, new connections and Redis round trips per turn, before and after the model request."""
    totals: Counter[str] = Counter()
    conversation = None
    for n in range(warmup + turns):
        body: dict[str, Any] = {"assistant_id": assistant, "message": texts[n % len(texts)]}
        if conversation and n % 10:
            body["conversation_id"] = conversation
        statements, connections = wire.mark()
        redis = upstash.mark() if upstash else 0
        AT_MODEL.clear()
        _, lines = first_event(client, "/api/chat", body)
        conversation = json.loads(next(line for line in lines if line.startswith("data: "))[6:])["conversation_id"]
        wire.wait_for("INSERT INTO performance_metrics", statements)  # the turn's last write, after the response
        time.sleep(0.05)
        if n < warmup:
            continue
        (sql_model, conn_model, redis_model), = AT_MODEL
        end_sql, end_conn = wire.mark()
        end_redis = upstash.mark() if upstash else 0
        totals.update({"sql_before": sql_model - statements, "sql_after": end_sql - sql_model,
                       "conn_before": conn_model - connections, "conn_after": end_conn - conn_model,
                       "redis_before": redis_model - redis, "redis_after": end_redis - redis_model})
    return {name: totals[name] / turns for name in ("sql_before", "sql_after", "conn_before", "conn_after",
                                                    "redis_before", "redis_after")}


def run(turns: int, sizes: list[int], names: list[str], baseline: Path | None = None,
        redis_latency_ms: float = 0.0) -> None:
    import httpx

    from bench import retrieval as corpus
    from scripts import local_upstash
    from scripts._serve import serve_in_thread
    from shared.core.db import connect
    from tests.fakes.pg_wire import PgWireCounter
    from tests.fakes.upstash_log import UpstashLog

    counters: dict[str, Any] = {}

    def snapshot(request: Any, body: dict[str, Any]) -> None:
        if counters:
            upstash = counters["upstash"]
            AT_MODEL.append((*counters["wire"].mark(), upstash.mark() if upstash else 0))

    world = corpus.World()
    chat_stand_ins_in_threads(corpus.embeddings_app(world), on_request=snapshot)
    with connect() as conn:
        ids, key = corpus.bench_assistant(conn)
    texts = corpus.queries(world)
    headers = {"Authorization": f"Bearer {key}"}
    redis_url = os.environ["BENCH_REDIS_URL"]
    configs = {name: {k: (redis_url if v == "<redis>" else v) for k, v in CONFIGS[name].items()} for name in names}
    roots = dict.fromkeys(configs, ROOT)
    if baseline is not None:
        configs["baseline"], roots["baseline"] = dict(configs.get("pooled", CONFIGS["pooled"])), baseline
    upstash_log = UpstashLog()
    upstash_app = local_upstash.create_app(_redis_client(redis_url), os.environ["UPSTASH_REDIS_REST_TOKEN"])
    if redis_latency_ms > 0:  # the measured configurations' Upstash: the stack's stand-in, answering later
        delayed_url, _ = serve_in_thread(_delayed(local_upstash.create_app(
            _redis_client(redis_url), os.environ["UPSTASH_REDIS_REST_TOKEN"]), redis_latency_ms / 1000))
        for env in configs.values():
            if "REDIS_URL" not in env:
                env["UPSTASH_REDIS_REST_URL"] = delayed_url

    async def logged(scope: Any, receive: Any, send: Any) -> None:
        chunks: list[bytes] = []

        async def reading() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                upstash_log.add(b"".join(chunks))
            return message

        await upstash_app(scope, reading if scope["type"] == "http" else receive, send)

    upstash_url, _ = serve_in_thread(logged)
    wire = PgWireCounter(os.environ["DATABASE_URL"])
    processes = []
    try:
        bare_url, bare_process = serve_app("bench.chat_overhead", "bare_app", factory=True)
        processes.append(bare_process)
        servers = {}
        for name, env in configs.items():
            url, process = serve_app("scripts.router", "create_router", factory=True, env={**os.environ, **env},
                                     path=roots[name])
            counting_env = {**env, "DATABASE_URL": wire.url}
            if "REDIS_URL" not in env:
                counting_env["UPSTASH_REDIS_REST_URL"] = upstash_url
            counting_url, counting_process = serve_app("scripts.router", "create_router", factory=True,
                                                       env={**os.environ, **counting_env}, path=roots[name])
            processes += [process, counting_process]
            servers[name] = (httpx.Client(base_url=url, headers=headers, timeout=30),
                             httpx.Client(base_url=counting_url, headers=headers, timeout=30))
        bare = httpx.Client(base_url=bare_url, timeout=30)
        loaded = 0
        print(f"{'chunks':>7} {'config':>11} | {'engine_ms p50/p99':>17} | {'ttft_ms p50/p99':>15} | "
              f"{'retrieval p50':>13} | {'client /api/chat':>16} | {'bare SSE':>15} | "
              f"before the model: SQL, new conn, Redis | after: SQL, new conn, Redis", flush=True)
        for size in sizes:
            if size > loaded:
                with connect() as conn:
                    if loaded == 0:
                        corpus.topics_table(conn, world)
                    corpus.load(conn, world, ids, loaded, size - loaded)
                    corpus.build_index(conn)
                loaded = size
            measured = measure({name: pair[0] for name, pair in servers.items()}, bare, ids["asst"], texts, turns)
            for name, (_, counting) in servers.items():
                col = columns(measured[name])
                upstash = None if "REDIS_URL" in configs[name] else upstash_log
                counters.update(wire=wire, upstash=upstash)
                c = count(counting, ids["asst"], texts, wire, upstash)
                counters.clear()
                redis_before = f"{c['redis_before']:.2f}" if upstash else "-"
                redis_after = f"{c['redis_after']:.2f}" if upstash else "-"
                print(f"{size:>7} {name:>11} | "
                      f"{pct(col['engine_ms'], .5):>7.2f} / {pct(col['engine_ms'], .99):>6.2f} | "
                      f"{pct(col['ttft_ms'], .5):>6.2f} / {pct(col['ttft_ms'], .99):>6.2f} | "
                      f"{pct(col['retrieval_ms'], .5):>13.2f} | "
                      f"{pct(col['client_ms'], .5):>6.2f} / {pct(col['client_ms'], .99):>7.2f} | "
                      f"{pct(col['bare_ms'], .5):>5.2f} / {pct(col['bare_ms'], .99):>7.2f} | "
                      f"{c['sql_before']:>5.2f}, {c['conn_before']:>4.2f}, {redis_before:>4} | "
                      f"{c['sql_after']:>5.2f}, {c['conn_after']:>4.2f}, {redis_after:>4}", flush=True)
            for name, fresh in (("fresh", True), ("reused", False)):
                floor = db_floor(key, ids, turns, fresh)
                what = "connect + " if fresh else ""
                print(f"{'':>20} floor, {name} connection: {what}the same three statements by hand (auth "
                      f"UPDATE, INSERT a message, SELECT chunks) p50 {pct(floor, .5):.2f} / "
                      f"p99 {pct(floor, .99):.2f} ms", flush=True)
    finally:
        for process in processes:
            stop_process(process)
        wire.close()


def _delayed(app: Any, delay_s: float) -> Any:
    """`app` answering each HTTP request `delay_s` later (asyncio.sleep: no CPU spent on the wait)."""
    import asyncio

    async def delayed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(delay_s)
        await app(scope, receive, send)

    return delayed


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def db_floor(key: str, ids: dict[str, str], turns: int, fresh: bool) -> list[float]:
    """The database work of a turn done by hand with psycopg: what any engine would pay here, right now."""
    import psycopg

    from shared.core.db import _connect_kwargs
    from shared.guard.auth import hash_key

    kwargs = {**_connect_kwargs(), "prepare_threshold": None}
    digest, times, kept = hash_key(key), [], None
    with psycopg.connect(**kwargs) as setup:
        conversation = setup.execute("INSERT INTO conversations (workspace_id, assistant_id) VALUES (%s, %s) "
                                     "RETURNING id", (ids["ws"], ids["asst"])).fetchone()["id"]
    for n in range(turns + 30):
        started = time.perf_counter()
        conn = psycopg.connect(**kwargs) if fresh or kept is None else kept
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE hash = %s RETURNING id", (digest,)).fetchone()
        conn.execute("INSERT INTO messages (workspace_id, conversation_id, role, content) VALUES (%s, %s, 'user', "
                     "'hello') RETURNING id", (ids["ws"], conversation)).fetchone()
        conn.execute("SELECT id, text FROM chunks WHERE workspace_id = %s AND assistant_id = %s LIMIT 5",
                     (ids["ws"], ids["asst"])).fetchall()
        if n >= 30:
            times.append((time.perf_counter() - started) * 1000)
        if fresh:
            conn.close()
        else:
            kept = conn
    if kept is not None:
        kept.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--chunks", default="0", help="comma-separated corpus sizes to measure at")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"which of {', '.join(CONFIGS)} to serve")
    parser.add_argument("--baseline", type=Path, help="also serve this checkout's code, pooled ('baseline')")
    parser.add_argument("--redis-latency-ms", type=float, default=0.0,
                        help="hold each Upstash answer back this long (a network between function and Upstash)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stack's folder")
    args = parser.parse_args()
    names = [name for name in args.configs.split(",") if name]
    if unknown := set(names) - set(CONFIGS):
        parser.error(f"unknown configuration {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    if args.baseline is not None and not (args.baseline / "scripts" / "router.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project")

    with local_stack("bench-chat-", keep=args.keep) as stack:
        create_database(stack, "bench")
        os.environ["BENCH_REDIS_URL"] = f"unix://{stack.redis.socket_file}"
        run(args.turns, [int(s) for s in args.chunks.split(",")], names, args.baseline, args.redis_latency_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
