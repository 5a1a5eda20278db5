"""Engine time before the model: POST /api/chat against a local OpenAI stand-in that answers at once.

    python bench/chat_overhead.py [--turns 300] [--chunks 0[,10000,100000]] [--keep]

Starts its own local stack (PostgreSQL + pgvector, Redis, the Upstash and QStash stand-ins) in a temporary
folder, an OpenAI chat stand-in and an embeddings stand-in, then serves the whole router (`make dev`'s
server) and a bare one-route FastAPI SSE endpoint, each in its own uvicorn process, so neither shares
a GIL with the client or the stand-ins. Reported as p50 / p99 over the measured turns (after a warm-up):
  engine_ms  server side, from the request's first dependency to the provider request: the DB
             connection, auth, assistant (Redis cache), storing the user message, retrieval, prompt;
  ttft_ms    server side, to the stand-in's first token (adds the SDK and the local HTTP hop);
  client     the client's time to the first `delta` event, beside the bare endpoint's time to its first
             event in the same run; the difference is what the engine adds to an SSE round trip.
A shorter in-process pass counts the SQL statements and Redis calls made before the provider request.
Every tenth turn starts a new conversation; the others continue one (history is read). Retrieval is
the default template's hybrid mode; query vectors repeat, so they come from the caches after first use.
With --chunks, chunks are loaded with bench/retrieval.py's generator before measuring at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COUNTS = {"db": 0, "redis": 0}
AT_MODEL: list[dict[str, int]] = []
SERVE = """
import sys, uvicorn
sys.path.insert(0, {root!r})
if {warm!r}:
    from bench.chat_overhead import warm_backends
    warm_backends()
from {module} import {factory} as make
uvicorn.run(make(), host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def warm_backends() -> None:
    """Reuse open connections, as a transaction pooler (pgbouncer, Vercel's -pooler URL) keeps its backends:
    warm catalog caches, and no server-side prepared statements (they don't survive such a pooler)."""
    import contextlib

    import psycopg

    import shared.db as db

    idle: list[Any] = []

    @contextlib.contextmanager
    def pooled() -> Any:
        try:
            conn = idle.pop()
        except IndexError:
            conn = psycopg.connect(**{**db._connect_kwargs(), "prepare_threshold": None})
        try:
            with db.translate_errors():
                yield conn
        finally:
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
            else:
                idle.append(conn)

    db.connect = pooled  # get_db looks it up at call time


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


def serve_process(module: str, factory: str, warm: bool = False) -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = SERVE.format(root=str(ROOT), module=module, factory=factory, port=port, warm=warm)
    process = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/api/none", timeout=1)
            return url, process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"{module} did not start")


def instrument() -> None:
    """Count SQL statements and Redis round trips in this process (the in-process counting pass)."""
    import psycopg

    from shared.kv import KV

    execute, call = psycopg.Cursor.execute, KV._call

    def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        # The metrics flush runs after each response (off the request path), maybe during the next turn.
        if "performance_metrics" not in str(query):
            COUNTS["db"] += 1
        return execute(self, query, *args, **kwargs)

    def counted_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["redis"] += 1
        return call(self, *args, **kwargs)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    KV._call = counted_call  # type: ignore[method-assign]


def first_event(client: Any, path: str, body: dict[str, Any]) -> tuple[float, list[str]]:
    """(seconds to the first `delta` event, all lines) for one streamed POST."""
    started = time.perf_counter()
    first, lines = None, []
    with client.stream("POST", path, json=body) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if first is None and line.startswith("event: delta"):
                first = time.perf_counter() - started
            lines.append(line)
    assert first is not None, lines
    return first, lines


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(client: Any, bare: Any, assistant: str, texts: list[str], turns: int, warmup: int = 30
            ) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    conversation = None
    for n in range(warmup + turns):
        body: dict[str, Any] = {"assistant_id": assistant, "message": texts[n % len(texts)]}
        if conversation and n % 10:
            body["conversation_id"] = conversation
        COUNTS.update(db=0, redis=0)
        AT_MODEL.clear()
        client_s, lines = first_event(client, "/api/chat", body)
        bare_s, _ = first_event(bare, "/sse", {}) if bare else (0.0, [])
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        conversation = events[0]["conversation_id"]
        done = events[-1]
        assert done["status"] == "complete" and done["provider"] == "openai", done
        if n >= warmup:
            timings = done["timings"]
            rows.append({"engine_ms": timings["engine_ms"], "ttft_ms": timings["ttft_ms"],
                         "retrieval_ms": timings["retrieval_ms"], "client_ms": client_s * 1000,
                         "bare_ms": bare_s * 1000, "sql": AT_MODEL[0]["db"] if AT_MODEL else -1,
                         "redis": AT_MODEL[0]["redis"] if AT_MODEL else -1})
    return rows


def run(turns: int, sizes: list[int]) -> None:
    import httpx

    from bench import retrieval as corpus
    from scripts._serve import serve_in_thread
    from scripts.router import create_router
    from shared.auth import create_workspace
    from shared.db import connect
    from tests.fakes.openai_server import FakeOpenAI

    model = FakeOpenAI()
    model.reply, model.chunk_chars = "OK.", 100
    next_step = model.next_step

    def snapshot(request: Any, body: dict[str, Any]) -> Any:
        AT_MODEL.append(dict(COUNTS))
        return next_step(request, body)

    model.next_step = snapshot  # type: ignore[method-assign]
    world = corpus.World()
    model_url, _ = serve_in_thread(model.app)
    embed_url, _ = serve_in_thread(corpus.embeddings_app(world))
    os.environ.update({"OPENAI_API_KEY": model.api_key, "OPENAI_BASE_URL": f"{model_url}/v1",
                       "EMBEDDING_BASE_URL": f"{embed_url}/v1", "VECTOR_BACKEND": "pgvector"})
    from shared.settings import get_settings

    get_settings.cache_clear()
    with connect() as conn:
        workspace, key = create_workspace(conn, "bench")
        ids = {"ws": workspace["id"]}
        ids["asst"] = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, 'b', "
                                   "'default') RETURNING id", (ids["ws"],)).fetchone()["id"]
        ids["src"] = conn.execute("INSERT INTO sources (workspace_id, assistant_id, kind, title) VALUES "
                                  "(%s, %s, 'text', 'bench') RETURNING id", (ids["ws"], ids["asst"])).fetchone()["id"]
    texts = corpus.queries(world)
    headers = {"Authorization": f"Bearer {key}"}
    engine_url, engine_process = serve_process("scripts.router", "create_router")
    warm_url, warm_process = serve_process("scripts.router", "create_router", warm=True)
    bare_url, bare_process = serve_process("bench.chat_overhead", "bare_app")
    counting_url, _ = serve_in_thread(create_router())
    instrument()
    try:
        engines = {"new": httpx.Client(base_url=engine_url, headers=headers, timeout=30),
                   "warm": httpx.Client(base_url=warm_url, headers=headers, timeout=30)}
        counting = httpx.Client(base_url=counting_url, headers=headers, timeout=30)
        bare = httpx.Client(base_url=bare_url, timeout=30)
        loaded = 0
        print("backends: new = a fresh PostgreSQL backend per request (make dev: no pooler); warm = reused, as "
              "behind a transaction pooler", flush=True)
        print(f"{'chunks':>7} {'db':>4} | {'engine_ms p50/p99':>17} | {'ttft_ms p50/p99':>15} | "
              f"{'client /api/chat':>16} | {'client bare SSE':>15} | {'overhead p50':>12} | retrieval_ms", flush=True)
        for size in sizes:
            if size > loaded:
                with connect() as conn:
                    if loaded == 0:
                        _topics_table(conn, world)
                    corpus.load(conn, world, ids, loaded, size - loaded)
                    corpus.build_index(conn)
                loaded = size
            counts = Counter((r["sql"], r["redis"]) for r in measure(counting, None, ids["asst"], texts, 60))
            for name, client in engines.items():
                col = _columns(measure(client, bare, ids["asst"], texts, turns))
                print(f"{size:>7} {name:>4} | {pct(col['engine_ms'], .5):>7.2f} / {pct(col['engine_ms'], .99):>6.2f} | "
                      f"{pct(col['ttft_ms'], .5):>6.2f} / {pct(col['ttft_ms'], .99):>6.2f} | "
                      f"{pct(col['client_ms'], .5):>6.2f} / {pct(col['client_ms'], .99):>7.2f} | "
                      f"{pct(col['bare_ms'], .5):>5.2f} / {pct(col['bare_ms'], .99):>7.2f} | "
                      f"{pct(col['client_ms'], .5) - pct(col['bare_ms'], .5):>9.2f} ms | "
                      f"{pct(col['retrieval_ms'], .5):>6.2f} / {pct(col['retrieval_ms'], .99):>6.2f}", flush=True)
            print(f"{'':>12}   (SQL statements, Redis calls) before the model, over 60 counted turns: "
                  f"{dict(sorted(counts.items()))}", flush=True)
            for name, fresh in (("new", True), ("warm", False)):
                floor = db_floor(key, ids, turns, fresh)
                print(f"{'':>12}   floor, {name} backend: connect + the same three statements by hand (auth "
                      f"UPDATE, INSERT a message, SELECT chunks) p50 {pct(floor, .5):.2f} / "
                      f"p99 {pct(floor, .99):.2f} ms", flush=True)
    finally:
        for process in (engine_process, warm_process, bare_process):
            process.terminate()
            process.wait(10)


def db_floor(key: str, ids: dict[str, str], turns: int, fresh: bool) -> list[float]:
    """The database work of a turn done by hand with psycopg: what any engine would pay here, right now."""
    import psycopg

    from shared.auth import hash_key
    from shared.db import _connect_kwargs

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


def _columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    return {key: [row[key] for row in rows] for key in rows[0]}


def _topics_table(conn: Any, world: Any) -> None:
    from shared.vectors.pgvector import vector_literal

    conn.execute("CREATE TABLE IF NOT EXISTS bench_topics (id int PRIMARY KEY, v vector(1536))")
    with conn.cursor().copy("COPY bench_topics FROM STDIN") as copy:
        for t, vector in enumerate(world.topic_vectors):
            copy.write_row((t, vector_literal(vector)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--chunks", default="0", help="comma-separated corpus sizes to measure at")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stack's folder")
    args = parser.parse_args()

    import psycopg

    from scripts.local_stack import LocalStack
    from shared.migrate import migrate

    folder = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    folder.chmod(0o755)  # as root, pgserver's own user must reach it
    stack = LocalStack(folder)
    os.environ.update(stack.start())
    try:
        with psycopg.connect(stack.pg.get_uri(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        os.environ["DATABASE_URL"] = stack.pg.get_uri("bench")
        migrate(os.environ["DATABASE_URL"])
        run(args.turns, [int(s) for s in args.chunks.split(",")])
    finally:
        stack.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
