"""Retrieval latency: hybrid (and keyword, vector) p50 / p99 of shared.knowledge.retrieval.retrieve() at 10k and 100k
chunks.

    python bench/retrieval.py [--sizes 10000,100000] [--runs 400] [--keep]

Starts its own local stack (PostgreSQL + pgvector, Redis, the Upstash stand-in) in a temporary folder and an
embeddings stand-in. Chunks get random-ish text (topic words plus Zipf-distributed common words) and dense
deterministic vectors (the sum of their three topics' random vectors), loaded with COPY; the HNSW index is
built after loading, as `vectorize all` after a bulk import would leave it. Queries mix topic words,
questions, a very common word and a word that matches nothing; query vectors come from the Redis cache
after the first call, as a repeated question would in production.
"""

from __future__ import annotations

import argparse
import array
import base64
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import create_database, local_stack, pct  # noqa: E402

DIM = 1536
TOPICS = 512
WORDS_PER_TOPIC = 40
COMMON_WORDS = 2000
CHUNK_WORDS = 120
CHUNKS_PER_DOCUMENT = 10
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "de", "pa", "gu", "fe", "zo", "bi", "xu", "wa"]


def make_word(rng: random.Random, used: set[str]) -> str:
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in used:
            used.add(word)
            return word


class World:
    """The vocabulary, topics and their vectors: everything both the loader and the embeddings stand-in need."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        used: set[str] = set()
        self.common = [make_word(rng, used) for _ in range(COMMON_WORDS)]
        self.common_weights = [1 / (rank + 1) for rank in range(COMMON_WORDS)]  # Zipf
        self.topic_words = [[make_word(rng, used) for _ in range(WORDS_PER_TOPIC)] for _ in range(TOPICS)]
        self.word_topic = {w: t for t, words in enumerate(self.topic_words) for w in words}
        self.topic_vectors = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(TOPICS)]

    def embed(self, text: str) -> list[float]:
        """Query vector: the sum of the topics its words belong to (a fixed direction when none)."""
        topics = {self.word_topic[w] for w in text.lower().split() if w in self.word_topic}
        if not topics:
            return self.topic_vectors[0][::-1]
        return [sum(self.topic_vectors[t][i] for t in topics) for i in range(DIM)]

    def chunk(self, rng: random.Random, topics: tuple[int, int, int]) -> tuple[str, str, str]:
        topical = [w for t in topics for w in self.topic_words[t]]
        words = [rng.choice(topical) if rng.random() < 0.4 else None for _ in range(CHUNK_WORDS)]
        fillers = iter(rng.choices(self.common, self.common_weights, k=CHUNK_WORDS))
        text = " ".join(w or next(fillers) for w in words)
        title = " ".join(rng.sample(self.topic_words[topics[0]], 3))
        heading = " ".join(rng.sample(self.topic_words[topics[1]], 2))
        return title, heading, text


def embeddings_app(world: World) -> Any:
    """An OpenAI-compatible /v1/embeddings answering with the world's dense vectors."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(array.array("f", world.embed(t)).tobytes()).decode()}
                for i, t in enumerate(inputs)]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


def bench_assistant(conn: Any) -> tuple[dict[str, str], str]:
    """A workspace with one assistant on the `default` template and one text source for the synthetic chunks:
    ({ws, asst, src} ids, the workspace's admin key)."""
    from shared.guard.auth import create_workspace

    workspace, key = create_workspace(conn, "bench")
    ids = {"ws": workspace["id"]}
    ids["asst"] = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, 'b', "
                               "'default') RETURNING id", (ids["ws"],)).fetchone()["id"]
    ids["src"] = conn.execute("INSERT INTO sources (workspace_id, assistant_id, kind, title) VALUES "
                              "(%s, %s, 'text', 'bench') RETURNING id", (ids["ws"], ids["asst"])).fetchone()["id"]
    return ids, key


def topics_table(conn: Any, world: World) -> None:
    """The topic vectors in a table of their own: `load` sums three of them per chunk inside PostgreSQL."""
    from pgvector import Vector

    conn.execute(f"CREATE TABLE IF NOT EXISTS bench_topics (id int PRIMARY KEY, v vector({DIM}))")
    with conn.cursor().copy("COPY bench_topics FROM STDIN") as copy:
        for t, vector in enumerate(world.topic_vectors):
            copy.write_row((t, Vector(vector).to_text()))


def load(conn: Any, world: World, ids: dict[str, str], start: int, count: int) -> float:
    """COPY `count` chunks (numbered from `start`) with their documents; returns seconds taken."""
    rng = random.Random(start)
    began = time.perf_counter()
    conn.execute("DROP INDEX IF EXISTS chunks_embedding")  # HNSW inserts one row at a time are slow: rebuild after
    first_doc, docs = start // CHUNKS_PER_DOCUMENT, -(-count // CHUNKS_PER_DOCUMENT)
    conn.execute("""INSERT INTO documents (id, workspace_id, assistant_id, source_id, url, title, status)
                    SELECT 'doc_b' || n, %(ws)s, %(asst)s, %(src)s, 'https://bench.example/' || n, 'Doc ' || n, 'ready'
                    FROM generate_series(%(first)s::int, %(last)s::int) n""",
                 {**ids, "first": first_doc, "last": first_doc + docs - 1})
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS bench_staging (n int, title text, heading text, text text, "
                 "t1 int, t2 int, t3 int)")
    conn.execute("TRUNCATE bench_staging")
    with conn.cursor().copy("COPY bench_staging FROM STDIN") as copy:
        for n in range(start, start + count):
            topics = (rng.randrange(TOPICS), rng.randrange(TOPICS), rng.randrange(TOPICS))
            copy.write_row((n, *world.chunk(rng, topics), *topics))
    # Vectors are summed inside Postgres (pgvector's +): no per-row float formatting in Python.
    conn.execute("""
        INSERT INTO chunks (id, workspace_id, assistant_id, source_id, document_id, ordinal, title, heading_path,
                            url, text, token_count, content_hash, language, vector_id, embedding)
        SELECT 'chk_b' || s.n, %(ws)s, %(asst)s, %(src)s, 'doc_b' || (s.n / %(per_doc)s), s.n %% %(per_doc)s,
               s.title, s.heading, 'https://bench.example/' || (s.n / %(per_doc)s), s.text, %(words)s,
               md5(s.text), 'english', 'chk_b' || s.n, a.v + b.v + c.v
        FROM bench_staging s JOIN bench_topics a ON a.id = s.t1 JOIN bench_topics b ON b.id = s.t2
        JOIN bench_topics c ON c.id = s.t3""", {**ids, "per_doc": CHUNKS_PER_DOCUMENT, "words": CHUNK_WORDS})
    return time.perf_counter() - began


def build_index(conn: Any) -> float:
    began = time.perf_counter()
    conn.execute("DROP INDEX IF EXISTS chunks_embedding")
    conn.execute("SET maintenance_work_mem = '2GB'")
    conn.execute("CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops)")
    conn.execute("VACUUM ANALYZE chunks")
    return time.perf_counter() - began


def queries(world: World) -> list[str]:
    rng = random.Random(99)
    out = []
    for _ in range(20):
        words = world.topic_words[rng.randrange(TOPICS)]
        out.append(" ".join(rng.sample(words, 3)))
    for _ in range(10):
        a, b = rng.sample(world.topic_words[rng.randrange(TOPICS)], 2)
        out.append(f"how do I {a} the {b} with {world.common[rng.randrange(50)]}?")
    out += [world.common[0], f"{world.common[0]} {world.common[1]}", "zzqx nothingmatches"]
    return out


def measure(conn: Any, ids: dict[str, str], texts: list[str], mode: str, runs: int) -> dict[str, float]:
    from shared.knowledge.retrieval import retrieve

    timings = []
    for i in range(runs):
        began = time.perf_counter()
        retrieve(conn, workspace_id=ids["ws"], assistant_id=ids["asst"], query=texts[i % len(texts)], top_k=5,
                 mode=mode)  # type: ignore[arg-type]
        timings.append((time.perf_counter() - began) * 1000)
    return {"p50": statistics.median(timings), "p99": pct(timings, .99), "mean": statistics.fmean(timings)}


def topic_precision(conn: Any, ids: dict[str, str], world: World, texts: list[str]) -> float:
    """Share of hybrid top-5 passages (topic queries) whose text uses a word of the asked topic."""
    from shared.knowledge.retrieval import retrieve

    hits = total = 0
    for text in texts[:20]:
        topic_words = set(world.topic_words[world.word_topic[text.split()[0]]])
        for p in retrieve(conn, workspace_id=ids["ws"], assistant_id=ids["asst"], query=text, top_k=5):
            total += 1
            hits += bool(topic_words & set(p.text.split()))
    return hits / max(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--keep", action="store_true", help="keep the temporary stack's folder")
    parser.add_argument("--shared-buffers", default="1536MB",
                        help="PostgreSQL shared_buffers; the 100k HNSW index is ~780 MB (pgserver's default: 128MB)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from scripts._serve import serve_in_thread

    with local_stack("bench-retrieval-", keep=args.keep) as stack:
        _size_shared_buffers(stack, args.shared_buffers)
        world = World()
        embed_url, stop_embed = serve_in_thread(embeddings_app(world))
        os.environ.update({"OPENAI_API_KEY": "bench-unused", "EMBEDDING_BASE_URL": f"{embed_url}/v1",
                           "VECTOR_BACKEND": "pgvector"})
        try:
            return run(stack, world, sizes, args.runs)
        finally:
            stop_embed()


def _size_shared_buffers(stack: Any, size: str) -> None:
    """A database serving 100k vectors is sized to keep its HNSW index in memory: restart with that setting."""
    import pgserver
    import psycopg

    with psycopg.connect(stack.pg.get_uri(), autocommit=True) as admin:
        admin.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
    data_dir = stack.pg.pgdata
    stack.pg.cleanup()
    stack.pg = pgserver.get_server(str(data_dir), cleanup_mode="stop")


def run(stack: Any, world: World, sizes: list[int], runs: int) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from shared.core.db import connect
    from shared.knowledge.embeddings import embed_query

    create_database(stack, "bench")
    texts = queries(world)
    print(f"{'chunks':>8} {'load':>8} {'index':>8} | {'what':34} {'p50 ms':>8} {'p99 ms':>8} {'mean':>8}")
    with connect() as conn:
        ids, _ = bench_assistant(conn)
        topics_table(conn, world)
        loaded = 0
        for size in sizes:
            load_s = load(conn, world, ids, loaded, size - loaded)
            rate = (size - loaded) / load_s
            loaded = size
            index_s = build_index(conn)
            print(f"{size:>8} {load_s:>7.1f}s {index_s:>7.1f}s | loaded {rate:,.0f} chunks/s (COPY + INSERT, no HNSW); "
                  "index built after", flush=True)
            embed_query("warm up the embeddings client")  # its first use imports the SDK
            cold = measure(conn, ids, [f"{t} {size}" for t in texts], "hybrid", len(texts))  # cache misses
            for _ in range(3):  # warm the buffers for the query set
                measure(conn, ids, texts, "hybrid", len(texts))
            rows = [("hybrid", measure(conn, ids, texts, "hybrid", runs)),
                    ("keyword", measure(conn, ids, texts, "keyword", runs)),
                    ("vector", measure(conn, ids, texts, "vector", runs)),
                    ("hybrid, most frequent word alone", measure(conn, ids, [world.common[0]], "hybrid", runs // 2)),
                    ("hybrid, query embedded by stand-in", cold)]
            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=None,
                                 row_factory=dict_row) as pooled:
                measure(pooled, ids, texts, "hybrid", len(texts))
                rows.append(("hybrid, no prepared statements", measure(pooled, ids, texts, "hybrid", runs)))
            for what, m in rows:
                print(f"{'':>8} {'':>8} {'':>8} | {what:34} {m['p50']:>8.2f} {m['p99']:>8.2f} {m['mean']:>8.2f}",
                      flush=True)
            precision = topic_precision(conn, ids, world, texts)
            print(f"{'':>8} {'':>8} {'':>8} | topic precision@5 (hybrid): {precision:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
