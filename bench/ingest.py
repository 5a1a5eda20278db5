"""Ingestion throughput: generated pages through chunk -> embed (a local stand-in) -> index on pgvector.

    python bench/ingest.py [--pages 1000] [--workers 2] [--live-pages 200] [--keep]

Starts PostgreSQL + pgvector (pgserver) in a temporary folder and migrates it. Pages are generated
markdown (~2 KB: a title, an intro and three sections of English-like text). The embeddings stand-in is
the same hashed bag of words the tests' OpenAI stand-in serves (1536 dimensions, normalised), computed
in-process, so the figures are ours and not an HTTP server's.

1. pipeline: every page through the production code path of one `ingest_pages` job minus the fetch:
   begin_attempt -> index_document (chunk, skip unchanged, embed, one binary COPY with the embeddings,
   document ready) -> finalize (counters), `--workers` pages at a time (QStash delivers in parallel),
   with the HNSW index built after the load. Time per stage, pages/s, chunks/s, memory at checkpoints.
2. re-sync of the same pages with nothing changed: every page skipped by its content hash.
3. the pipeline again for `--live-pages` new pages with the HNSW index maintained row by row, as a
   sync into an existing index runs in production (pgvector's per-row HNSW insert is the slow part).
4. the DB write alone (copy_chunks, 500 rows per COPY, `--workers` connections): without the HNSW
   index, keyword-only (no embedding column) and with the index live, so each share is visible.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 1536
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
STOP = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "in", "is", "it", "of",
                  "on", "or", "the", "this", "to", "we", "with", "you", "your"])
TIMINGS: dict[str, float] = defaultdict(float)
_lock = threading.Lock()


def page(n: int, version: int = 0) -> tuple[str, str, str]:
    """(url, title, markdown) of generated page `n`, about 2 KB."""
    rng = random.Random(n * 7919 + version)
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


def embed(text: str) -> list[float]:
    """The tests' stand-in vector: hashed bag of words, normalised (deterministic, similar texts are near)."""
    vector = [0.0] * DIM
    for word in text.lower().split():
        word = word.strip(".,#>")
        if not word or word in STOP:
            continue
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % DIM] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def timed(name: str, fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                TIMINGS[name] += time.perf_counter() - began
    return wrapper


def install_stand_ins() -> None:
    """Embeddings from `embed`, and timers around the pipeline's stages (this process only)."""
    from shared import embeddings
    from shared.crawl import indexer

    embeddings.embeddings_enabled = lambda: True
    embeddings.embed_texts = timed("embed", lambda texts: [embed(t) for t in texts])
    indexer.chunk_markdown = timed("chunk", indexer.chunk_markdown)
    indexer.copy_chunks = timed("copy", indexer.copy_chunks)
    indexer._write = timed("db_write", indexer._write)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def setup(uri: str) -> dict[str, Any]:
    from shared.auth import create_workspace
    from shared.db import connect

    with connect() as conn:
        workspace, _ = create_workspace(conn, "bench")
        assistant = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, 'b', "
                                 "'default') RETURNING id", (workspace["id"],)).fetchone()["id"]
        sources = [conn.execute("""INSERT INTO sources (workspace_id, assistant_id, kind, url, config, status,
                                   sync_generation) VALUES (%s, %s, 'site', 'https://bench.example/',
                                   '{"limit": 100000}', 'indexing', 1)
                                   RETURNING id, workspace_id, assistant_id, kind, url, title, config, language,
                                             status, sync_generation, crawl_id, sync_interval_hours""",
                                (workspace["id"], assistant)).fetchone() for _ in range(3)]
    return {"workspace": workspace["id"], "assistant": assistant, "sources": sources}


def pipeline(ids: dict[str, Any], pages: int, workers: int, *, version: int = 0, source_index: int = 0,
             first_page: int = 0) -> dict[str, Any]:
    """Every page through begin_attempt -> index_document -> finalize; returns the figures."""
    from shared.crawl.indexer import index_document
    from shared.crawl.pipeline import begin_attempt, finalize, register_pages
    from shared.db import connect

    source = ids["sources"][source_index]
    TIMINGS.clear()
    with connect() as conn:
        if version:  # a re-sync: every page becomes pending again in the next generation
            conn.execute("UPDATE sources SET sync_generation = sync_generation + 1, status = 'indexing' "
                         "WHERE id = %s", (source["id"],))
            source["sync_generation"] += 1
        began = time.perf_counter()
        register_pages(conn, source, source["sync_generation"],
                       [page(n)[0] for n in range(first_page, first_page + pages)])
        TIMINGS["register"] = time.perf_counter() - began
    checkpoints: list[tuple[int, float, float]] = []
    done = [0, 0]  # pages, chunks

    if tracemalloc.is_tracing():
        tracemalloc.reset_peak()

    def heap_mb() -> float:
        return tracemalloc.get_traced_memory()[1] / 1e6 if tracemalloc.is_tracing() else float("nan")

    def work(numbers: range) -> None:
        with connect() as conn:
            for n in numbers:
                url, title, markdown = page(n)
                doc = begin_attempt(conn, source["id"], source["sync_generation"], url)
                assert doc is not None
                result = index_document(conn, doc, generation=source["sync_generation"], title=title,
                                        markdown=markdown, url=url, language="english")
                finalize(conn, source["id"], source["sync_generation"])
                with _lock:
                    done[0] += 1
                    done[1] += result.chunks if not result.unchanged else 0
                    if done[0] % (pages // 4 or 1) == 0:
                        checkpoints.append((done[0], rss_mb(), heap_mb()))

    began = time.perf_counter()
    step, end = -(-pages // workers), first_page + pages
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, [range(i, min(end, i + step)) for i in range(first_page, end, step)]))
    wall = time.perf_counter() - began
    peak = heap_mb()
    with connect() as conn:
        state = conn.execute("SELECT status, pages_done, chunks_count FROM sources WHERE id = %s",
                             (source["id"],)).fetchone()
    return {"wall": wall, "pages": done[0], "chunks": done[1], "peak_py_mb": peak, "checkpoints": checkpoints,
            "state": state, **TIMINGS}


def db_write(ids: dict[str, Any], pages: int, workers: int, mode: str) -> dict[str, float]:
    """copy_chunks alone for `pages` generated pages (chunked and embedded before the clock starts)."""
    from shared.chunking import chunk_markdown
    from shared.crawl.indexer import chunk_id, copy_chunks
    from shared.db import connect

    source = ids["sources"][2]
    with connect() as conn:
        conn.execute("DELETE FROM documents WHERE source_id = %s", (source["id"],))
        docs = conn.execute("""INSERT INTO documents (workspace_id, assistant_id, source_id, url, sync_generation)
                               SELECT %s, %s, %s, 'https://bench.example/w/' || n, 1 FROM generate_series(0, %s) n
                               RETURNING id""",
                            (ids["workspace"], ids["assistant"], source["id"], pages - 1)).fetchall()
    rows, vectors = [], []
    for n, doc in enumerate(docs):
        url, title, markdown = page(n + 100_000)
        for c in chunk_markdown(markdown, title):
            rows.append({"id": chunk_id(doc["id"], c.ordinal, c.content_hash), "workspace_id": ids["workspace"],
                         "assistant_id": ids["assistant"], "source_id": source["id"], "document_id": doc["id"],
                         "ordinal": c.ordinal, "title": title, "heading_path": c.heading_path, "url": url,
                         "text": c.text, "token_count": c.token_count, "content_hash": c.content_hash,
                         "language": "english"})
            # float32 arrays: a quarter of the memory of lists of floats, and struct.pack takes them as they are
            vectors.append(array.array("f", embed(c.text)) if mode != "keyword" else None)
    batches = [(rows[i:i + 500], vectors[i:i + 500]) for i in range(0, len(rows), 500)]

    def write(part: list[tuple[list[Any], list[Any]]]) -> None:
        with connect() as conn:
            for batch_rows, batch_vectors in part:
                with conn.transaction():
                    copy_chunks(conn, batch_rows, None if mode == "keyword" else batch_vectors,
                                with_embedding=mode != "keyword")

    began = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, [batches[i::workers] for i in range(workers)]))
    wall = time.perf_counter() - began
    return {"rows": len(rows), "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--live-pages", type=int, default=200,
                        help="pages for the runs with the HNSW index maintained row by row (0 skips them)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace the Python heap (its peak is shown; it slows Python down about 2x)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database folder")
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    import pgserver
    import psycopg

    server = pgserver.get_server(str(tmp / "pg"), cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        for name in ("PINECONE_API_KEY", "OPENAI_API_KEY", "VECTOR_BACKEND"):
            os.environ.pop(name, None)
        os.environ["DATABASE_URL"] = server.get_uri("bench")
        from shared.migrate import migrate

        migrate(os.environ["DATABASE_URL"])
        install_stand_ins()
        report(args, setup(os.environ["DATABASE_URL"]))
    finally:
        server.cleanup()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(args: argparse.Namespace, ids: dict[str, Any]) -> None:
    from shared.db import connect

    def sql(statement: str) -> float:
        began = time.perf_counter()
        with connect() as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(statement)
        return time.perf_counter() - began

    def show(title: str, run: dict[str, Any]) -> None:
        print(f"\n{title}: {run['pages']} pages, {run['chunks']} chunks in {run['wall']:.1f} s = "
              f"{run['pages'] / run['wall']:.0f} pages/s, {run['chunks'] / run['wall']:.0f} chunks/s")
        busy = run["wall"] * args.workers
        print("   time summed over workers: " + ", ".join(
            f"{name} {run.get(name, 0):.2f} s ({100 * run.get(name, 0) / busy:.0f}%)"
            for name in ("chunk", "embed", "copy", "db_write", "register")))
        heap = tracemalloc.is_tracing()
        print(f"   memory (pages done, RSS MB{', Python heap peak MB' if heap else ''}): " + ", ".join(
            f"({p}, {r:.0f}{f', {h:.1f}' if heap else ''})" for p, r, h in run["checkpoints"]))
        print(f"   source afterwards: {dict(run['state'])}")

    print(f"{args.pages} pages of ~2 KB, {args.workers} workers, pgvector (HNSW m=16, ef_construction=64), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    sql("DROP INDEX chunks_embedding")
    bulk = pipeline(ids, args.pages, args.workers)
    show("1. pipeline, HNSW index built after the load (as after a bulk import)", bulk)
    print(f"   CREATE INDEX (HNSW) over {bulk['chunks']} vectors: {sql(INDEX):.1f} s")
    replay = pipeline(ids, args.pages, args.workers, version=1)
    print(f"\n2. re-sync with nothing changed: {replay['pages']} pages in {replay['wall']:.1f} s = "
          f"{replay['pages'] / replay['wall']:.0f} pages/s (embedded {replay.get('embed', 0):.2f} s, "
          f"copied {replay.get('copy', 0):.2f} s)")
    if args.live_pages:
        live = pipeline(ids, args.live_pages, args.workers, source_index=1, first_page=args.pages)
        show("3. pipeline with the HNSW index maintained row by row (production path)", live)
    print("\n4. DB write alone (copy_chunks: binary COPY, 500 rows a statement, tsvector + GIN + vector):")
    sql("DROP INDEX chunks_embedding")
    deferred = db_write(ids, args.pages, args.workers, "deferred")
    print(f"   without the HNSW index: {deferred['rows']} rows in {deferred['wall']:.2f} s = "
          f"{deferred['rows'] / deferred['wall']:6.0f} rows/s")
    keyword = db_write(ids, args.pages, args.workers, "keyword")
    print(f"   keyword only (no vector): {keyword['rows']} rows in {keyword['wall']:.2f} s = "
          f"{keyword['rows'] / keyword['wall']:6.0f} rows/s")
    sql(INDEX)
    if args.live_pages:
        live_write = db_write(ids, args.live_pages, args.workers, "hnsw")
        print(f"   with the HNSW index live: {live_write['rows']} rows in {live_write['wall']:.2f} s = "
              f"{live_write['rows'] / live_write['wall']:6.0f} rows/s")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")


INDEX = "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops)"


if __name__ == "__main__":
    raise SystemExit(main())
