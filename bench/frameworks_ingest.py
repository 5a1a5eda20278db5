"""Ingestion beside LangChain and LlamaIndex (bench/frameworks.py runs it; see there for the command).

bench/ingest.py's harness as it is: per dimension a fresh database, the engine in its own uvicorn process fed
by the QStash stand-in, the numpy embeddings stand-in in its own process; its job pipeline is timed first
(pages handed over as a crawl hands them, until the source is ready and the HNSW index valid). Then, on the
same database and stand-in, the frameworks' bulk loaders take the same pages' chunks (bench/ingest.py's
pages, cut by the engine's chunk_markdown, the cutting inside their clock as it is inside the engine's):
- LangChain: PGVector.add_texts, 2,048 chunks a call (it embeds a call's texts 1,000 a request, then writes
  them in one INSERT ... ON CONFLICT); its docs leave the vector index to the user: one CREATE INDEX (HNSW,
  m=16, ef_construction=64) after the load, inside the clock.
- LlamaIndex: VectorStoreIndex(nodes) over PGVectorStore with hnsw_kwargs (m=16, ef_construction=64): it
  creates the HNSW index with the table, so vectors join the graph row by row as they are written; it embeds
  100 texts a request and adds 2,048 nodes a transaction (its defaults).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

from bench import ingest
from bench._harness import temporary_folder
from bench.frameworks_turns import HNSW, langchain_store, llama_models, llama_store

LANGCHAIN_CALL = 2048  # add_texts embeds a whole call in memory: a caller slices a large load


def corpus_chunks(chunks: int) -> list[tuple[str, str, str]]:
    """(url, title, text) of bench/ingest.py's pages as the engine cuts them."""
    from shared.knowledge.chunking import chunk_markdown

    out = []
    for n in range(math.ceil(chunks / ingest.CHUNKS_PER_PAGE)):
        url, title, markdown = ingest.page(n)
        out += [(url, title, chunk.text) for chunk in chunk_markdown(markdown, title)]
    return out


def langchain_load(dim: int, chunks: int) -> dict[str, float]:
    import langchain_postgres.vectorstores
    import psycopg
    from sqlalchemy.orm import declarative_base

    # langchain-postgres makes its table model once per process, sized by the first store's dimension
    langchain_postgres.vectorstores._classes = None
    langchain_postgres.vectorstores.Base = declarative_base()
    began = time.perf_counter()
    rows = corpus_chunks(chunks)
    store = langchain_store(os.environ["EMBEDDING_BASE_URL"], ingest.EMBED_KEY, dim, collection=f"ingest_{dim}")
    for start in range(0, len(rows), LANGCHAIN_CALL):
        part = rows[start:start + LANGCHAIN_CALL]
        store.add_texts([t for _, _, t in part], metadatas=[{"url": u, "title": ti} for u, ti, _ in part])
    loaded = time.perf_counter()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"SET maintenance_work_mem = '{os.environ.get('INDEX_BUILD_MEMORY_MB', '1024')}MB'")
        conn.execute("CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops) "
                     f"WITH (m = {HNSW['hnsw_m']}, ef_construction = {HNSW['hnsw_ef_construction']})")
        stored = conn.execute("SELECT count(*) FROM langchain_pg_embedding").fetchone()[0]
    done = time.perf_counter()
    return {"rows": stored, "wall": done - began, "index": done - loaded}


def llamaindex_load(dim: int, chunks: int) -> dict[str, float]:
    import psycopg
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode

    began = time.perf_counter()
    nodes = [TextNode(text=t, metadata={"url": u, "title": ti}) for u, ti, t in corpus_chunks(chunks)]
    store = llama_store(dim, table=f"ingest_{dim}")
    embed, _ = llama_models({"embed": os.environ["EMBEDDING_BASE_URL"]}, ingest.EMBED_KEY, dim)
    VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed)
    done = time.perf_counter()
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        stored = conn.execute(f"SELECT count(*) FROM data_ingest_{dim}").fetchone()[0]
    return {"rows": stored, "wall": done - began, "index": 0.0}


LOADERS = (("langchain", "LangChain PGVector.add_texts", langchain_load),
           ("llamaindex", "LlamaIndex VectorStoreIndex (PGVectorStore)", llamaindex_load))


class FrameworksBench(ingest.Bench):
    """bench/ingest.py's Bench: its plain-loader step (run after the pipeline, stand-in and database still up)
    runs the frameworks' loaders instead, and the plain loader too when asked."""

    def plain(self, dim: int) -> dict[str, Any]:  # type: ignore[override]
        results: dict[str, Any] = {}
        loaders = [(name, load) for key, name, load in LOADERS if key in self.args.loaders]
        if self.args.with_plain:
            loaders.append(("plain loader (bench/ingest.py)", lambda _dim, _chunks: super(FrameworksBench, self)
                            .plain(_dim)))
        for name, load in loaders:
            try:
                results[name] = load(dim, self.args.chunks)
            except Exception as error:  # one loader failing leaves the others' figures
                print(f"ingest: {dim} dimensions, {name} failed: {str(error)[:300]}", flush=True)
                continue
            print(f"ingest: {dim} dimensions, {name}: {results[name]['rows']} chunks in "
                  f"{results[name]['wall']:.1f} s", flush=True)
        return results


def run(chunks: int, dims: list[int], with_plain: bool, embed_latency_ms: float, out: list[dict[str, Any]],
        loaders: tuple[str, ...] = ("langchain", "llamaindex")) -> None:
    args = argparse.Namespace(chunks=chunks, plain_chunks=chunks, with_plain=with_plain, deliveries=16, loaders=loaders,
                              embed_latency_ms=embed_latency_ms, sample_s=10.0, timeout_s=3600.0)
    with temporary_folder("bench-frameworks-ingest-") as folder:
        bench = FrameworksBench(args, folder)
        try:
            for dim in dims:
                result = bench.run(dim)
                p = result["pipeline"]
                print(f"ingest: {dim} dimensions, engine pipeline: {p['chunks_count']} chunks in {p['wall']:.1f} s "
                      f"(HNSW build job {(p['build_ms'] or 0) / 1000:.1f} s)", flush=True)
                out.append({"dim": dim, "loader": "Dialog Engine job pipeline", "rows": p["chunks_count"],
                            "wall": p["wall"], "index": (p["build_ms"] or 0) / 1000})
                for name, r in result["plain"].items():
                    out.append({"dim": dim, "loader": name, "rows": r["rows"], "wall": r["wall"],
                                "index": r["index"]})
        finally:
            bench.close()
