"""64 concurrent streaming chat turns on ONE server process, over a model stand-in that answers at once.

    python bench/concurrency.py [--concurrency 64] [--rounds 5] [--chunks 2000]

Starts its own local stack (PostgreSQL + pgvector, Redis, the Upstash and QStash stand-ins), an OpenAI chat
stand-in, an embeddings stand-in, and serves the whole router in one uvicorn process per configuration:
  pooled   DB_POOL_SIZE=10 (the default);
  fresh    DB_POOL_SIZE=0, a new PostgreSQL connection for every use (the engine before the pool).
Each round fires `--concurrency` streamed turns at once (hybrid retrieval over `--chunks` chunks; every
tenth question new, so most query vectors come from the caches) and waits for all of them. Printed per
configuration: turns completed, and p50 / p99 of the client's time to the first byte of the body and to
the first `delta` event, and of the server's own engine_ms (turn start to model request), over all rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import pct, serve_process  # noqa: E402

CONFIGS = [("pooled", {"DB_POOL_SIZE": "10"}), ("fresh", {"DB_POOL_SIZE": "0"})]


async def one_turn(client: Any, assistant: str, message: str) -> dict[str, float]:
    started = time.perf_counter()
    first_byte = first_delta = None
    done: dict[str, Any] = {}
    async with client.stream("POST", "/api/chat", json={"assistant_id": assistant, "message": message}) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{reply.status_code}: {(await reply.aread())[:300]!r}")
        event = None
        async for line in reply.aiter_lines():
            now = time.perf_counter()
            first_byte = first_byte or now
            if line.startswith("event: "):
                event = line[7:]
                if event == "delta" and first_delta is None:
                    first_delta = now
            elif line.startswith("data: ") and event == "done":
                done = json.loads(line[6:])
    if done.get("status") != "complete" or first_byte is None or first_delta is None:
        raise RuntimeError(f"turn did not complete: {done}")
    return {"ttfb_ms": (first_byte - started) * 1000, "delta_ms": (first_delta - started) * 1000,
            "engine_ms": float(done["timings"]["engine_ms"] or 0)}


async def rounds(url: str, key: str, assistant: str, texts: list[str], concurrency: int, count: int,
                 ) -> tuple[list[dict[str, float]], int]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    rows: list[dict[str, float]] = []
    failed = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=limits) as client:
        await one_turn(client, assistant, texts[0])  # warm the instance: SDKs, caches, the pool
        for r in range(count + 1):
            batch = [one_turn(client, assistant, texts[(r * concurrency + i) % len(texts)])
                     for i in range(concurrency)]
            results = await asyncio.gather(*batch, return_exceptions=True)
            if r == 0:
                continue  # the first burst fills the pool and the caches: not measured
            for result in results:
                if isinstance(result, BaseException):
                    failed += 1
                    print(f"  failed: {type(result).__name__} {result}", flush=True)
                else:
                    rows.append(result)
    return rows, failed


def run(concurrency: int, count: int, chunks: int) -> None:
    from bench import retrieval as corpus
    from shared.core.db import connect
    from shared.guard.auth import create_workspace
    from tests.fakes.openai_server import FakeOpenAI

    world = corpus.World()
    # The stand-ins in processes of their own: in this one they would share a GIL with 64 clients.
    model_url, model_process = serve_process("bench.concurrency", "model_app")
    embed_url, embed_process = serve_process("bench.concurrency", "embeddings_app")
    os.environ.update({"OPENAI_API_KEY": FakeOpenAI().api_key, "OPENAI_BASE_URL": f"{model_url}/v1",
                       "EMBEDDING_BASE_URL": f"{embed_url}/v1", "VECTOR_BACKEND": "pgvector",
                       # 64 turns a second from one key and one address are the point here, not a limit.
                       "RATE_CHAT_PER_KEY_PER_MINUTE": "1000000", "RATE_CHAT_PER_USER_PER_MINUTE": "1000000",
                       "DAILY_TOKEN_BUDGET": str(10**12)})
    from shared.core.settings import get_settings

    get_settings.cache_clear()
    with connect() as conn:
        workspace, key = create_workspace(conn, "bench")
        ids = {"ws": workspace["id"]}
        ids["asst"] = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, 'b', "
                                   "'default') RETURNING id", (ids["ws"],)).fetchone()["id"]
        ids["src"] = conn.execute("INSERT INTO sources (workspace_id, assistant_id, kind, title) VALUES "
                                  "(%s, %s, 'text', 'bench') RETURNING id", (ids["ws"], ids["asst"])).fetchone()["id"]
        corpus.topics_table(conn, world)
        corpus.load(conn, world, ids, 0, chunks)
        corpus.build_index(conn)
    texts = corpus.queries(world)
    print(f"{concurrency} concurrent streamed turns x {count} rounds, one uvicorn process, {chunks} chunks, "
          f"hybrid retrieval; client times from request start", flush=True)
    print(f"{'config':>7} | {'done':>9} | {'first byte p50/p99 ms':>21} | {'first delta p50/p99 ms':>22} | "
          f"{'engine_ms p50/p99':>17}", flush=True)
    for name, env in CONFIGS:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        url, process = serve_process("scripts.router", "create_router")
        try:
            rows, failed = asyncio.run(rounds(url, key, ids["asst"], texts, concurrency, count))
        finally:
            process.terminate()
            process.wait(10)
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        if not rows:
            print(f"{name:>7} | 0/{failed}", flush=True)
            continue
        col = {k: [r[k] for r in rows] for k in ("ttfb_ms", "delta_ms", "engine_ms")}
        print(f"{name:>7} | {len(rows):>4}/{len(rows) + failed:<4} | {pct(col['ttfb_ms'], .5):>8.1f} / "
              f"{pct(col['ttfb_ms'], .99):>8.1f} | {pct(col['delta_ms'], .5):>8.1f} / {pct(col['delta_ms'], .99):>9.1f}"
              f" | {pct(col['engine_ms'], .5):>7.1f} / {pct(col['engine_ms'], .99):>7.1f}", flush=True)
    for process in (model_process, embed_process):
        process.terminate()
        process.wait(10)


def model_app() -> Any:
    from tests.fakes.openai_server import FakeOpenAI

    model = FakeOpenAI()
    model.reply, model.chunk_chars = "OK.", 100
    return model.app


def embeddings_app() -> Any:
    from bench import retrieval as corpus

    return corpus.embeddings_app(corpus.World())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()

    import psycopg

    from scripts.local_stack import LocalStack
    from shared.ops.migrate import migrate

    folder = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    folder.chmod(0o755)  # as root, pgserver's own user must reach it
    stack = LocalStack(folder)
    os.environ.update(stack.start())
    try:
        with psycopg.connect(stack.pg.get_uri(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        os.environ["DATABASE_URL"] = stack.pg.get_uri("bench")
        migrate(os.environ["DATABASE_URL"])
        run(args.concurrency, args.rounds, args.chunks)
    finally:
        stack.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
