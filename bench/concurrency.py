"""64 concurrent streaming chat turns on ONE server process, over a model stand-in that answers at once.

    python bench/concurrency.py [--concurrency 64] [--rounds 5] [--chunks 2000]

Starts its own local stack (PostgreSQL + pgvector, Redis, the Upstash and QStash stand-ins), an OpenAI chat
stand-in, an embeddings stand-in, and serves the whole router in one uvicorn process per configuration:
  pooled   DB_POOL_SIZE=10 (the default);
  fresh    DB_POOL_SIZE=0, a new PostgreSQL connection for every use (the engine before the pool);
  bare     the floor of this machine and client: a one-route FastAPI app in the same kind of process that
           streams the same events at once (no auth, database, Redis, retrieval or model).
Each round fires `--concurrency` streamed turns at once (hybrid retrieval over `--chunks` chunks; every
tenth question new, so most query vectors come from the caches) and waits for all of them. Printed per
configuration: turns completed, and p50 / p99 of the client's time to the first byte of the body and to
the first `delta` event, and of the server's own engine_ms (turn start to model request), over all rounds,
and the server process's CPU time per measured turn (from /proc: user + system).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    columns,
    create_database,
    instant_model,
    local_stack,
    pct,
    serve_app,
    stop_process,
    use_chat_stand_ins,
)

CONFIGS = [("pooled", {"DB_POOL_SIZE": "10"}), ("fresh", {"DB_POOL_SIZE": "0"}), ("bare", {})]


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def rounds(url: str, key: str, assistant: str, texts: list[str], concurrency: int, count: int, pid: int,
                 ) -> tuple[list[dict[str, float]], int, float]:
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
            if r == 1:
                cpu_before = cpu_seconds(pid)
            results = await asyncio.gather(*batch, return_exceptions=True)
            if r == 0:
                continue  # the first burst fills the pool and the caches: not measured
            for result in results:
                if isinstance(result, BaseException):
                    failed += 1
                    print(f"  failed: {type(result).__name__} {result}", flush=True)
                else:
                    rows.append(result)
        cpu_s = cpu_seconds(pid) - cpu_before
    return rows, failed, cpu_s


def run(concurrency: int, count: int, chunks: int) -> None:
    from bench import retrieval as corpus
    from shared.core.db import connect
    from tests.fakes.openai_server import FakeOpenAI

    world = corpus.World()
    # The stand-ins in processes of their own: in this one they would share a GIL with 64 clients.
    model_url, model_process = serve_app("bench.concurrency", "model_app", factory=True)
    embed_url, embed_process = serve_app("bench.concurrency", "embeddings_app", factory=True)
    use_chat_stand_ins(FakeOpenAI().api_key, f"{model_url}/v1", f"{embed_url}/v1")
    with connect() as conn:
        ids, key = corpus.bench_assistant(conn)
        corpus.topics_table(conn, world)
        corpus.load(conn, world, ids, 0, chunks)
        corpus.build_index(conn)
    texts = corpus.queries(world)
    print(f"{concurrency} concurrent streamed turns x {count} rounds, one uvicorn process, {chunks} chunks, "
          f"hybrid retrieval; client times from request start", flush=True)
    print(f"{'config':>7} | {'done':>9} | {'first byte p50/p99 ms':>21} | {'first delta p50/p99 ms':>22} | "
          f"{'engine_ms p50/p99':>17} | server CPU ms/turn", flush=True)
    for name, env in CONFIGS:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        url, process = serve_app(*(("bench.concurrency", "bare_app") if name == "bare" else
                                   ("scripts.router", "create_router")), factory=True)
        try:
            rows, failed, cpu_s = asyncio.run(rounds(url, key, ids["asst"], texts, concurrency, count, process.pid))
        finally:
            stop_process(process)
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        if not rows:
            print(f"{name:>7} | 0/{failed}", flush=True)
            continue
        col = columns(rows)
        print(f"{name:>7} | {len(rows):>4}/{len(rows) + failed:<4} | {pct(col['ttfb_ms'], .5):>8.1f} / "
              f"{pct(col['ttfb_ms'], .99):>8.1f} | {pct(col['delta_ms'], .5):>8.1f} / {pct(col['delta_ms'], .99):>9.1f}"
              f" | {pct(col['engine_ms'], .5):>7.1f} / {pct(col['engine_ms'], .99):>7.1f}"
              f" | {cpu_s * 1000 / len(rows):>6.2f}", flush=True)
    for process in (model_process, embed_process):
        stop_process(process)


def bare_app() -> Any:
    """/api/chat as a bare FastAPI route: the events a turn streams, sent at once."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/api/chat")
    async def chat(body: dict[str, Any]) -> StreamingResponse:

        async def events() -> Any:
            yield b'event: conversation\ndata: {"conversation_id":"c"}\n\n'
            yield b'event: delta\ndata: {"text":"OK."}\n\n'
            yield b"event: sources\ndata: []\n\n"
            yield b'event: done\ndata: {"status":"complete","timings":{"engine_ms":0}}\n\n'
        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def model_app() -> Any:
    return instant_model().app


def embeddings_app() -> Any:
    from bench import retrieval as corpus

    return corpus.embeddings_app(corpus.World())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()

    with local_stack("bench-concurrency-") as stack:
        create_database(stack, "bench")
        run(args.concurrency, args.rounds, args.chunks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
