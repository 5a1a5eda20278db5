"""Dialog Engine beside LangChain and LlamaIndex: turn latency and ingestion, same corpus, same stand-ins, one run.

    make bench-frameworks FRAMEWORKS_ARGS="--chunks 10000"
    .bench-frameworks/bin/python bench/frameworks.py [--only turns|ingest] [--chunks 10000[,100000]]
                                                     [--dims 1536,512] [--turns 300] [--plain]
                                                     [--embed-latency-ms 0] [--loaders langchain,llamaindex]

The frameworks live in their own virtualenv (.bench-frameworks/, made by `make bench-frameworks` from
requirements-local.txt and bench/requirements-frameworks.txt, the project's own pins winning), never in .venv.

turns   (bench/frameworks_turns.py) time from a turn's start until its chat-completions request arrives at the
        OpenAI stand-in, p50 / p99: a hand-written floor (psycopg + httpx, dense), LangChain LCEL with
        PGVector (dense), LlamaIndex's query engine and chat engine (dense) and its query engine in hybrid mode,
        the engine over HTTP (one uvicorn worker: auth, admission, the turn stored, hybrid retrieval). At each
        --chunks size (cumulative).
ingest  (bench/frameworks_ingest.py) --chunks chunks end to end including the HNSW index, chunks/s: the engine's
        job pipeline (bench/ingest.py's harness), LangChain's and LlamaIndex's bulk loaders, at each --dims;
        --plain adds bench/ingest.py's plain loader, --loaders picks the frameworks (LlamaIndex's live HNSW index
        alone takes most of an hour at 100k chunks here). At the largest --chunks size.
Prints a markdown table per part. On a shared machine read the ratios: every variant runs in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import create_database, local_stack, pct  # noqa: E402


def versions() -> str:
    from importlib.metadata import version

    names = ("langchain-core", "langchain-openai", "langchain-postgres", "llama-index-core",
             "llama-index-vector-stores-postgres", "llama-index-embeddings-openai", "llama-index-llms-openai",
             "sqlalchemy", "openai", "pgvector", "psycopg")
    return ", ".join(f"{name} {version(name)}" for name in names)


def turns_table(rows: list[dict[str, Any]]) -> str:
    sizes = sorted({r["chunks"] for r in rows})
    names = list(dict.fromkeys(r["variant"] for r in rows if r["variant"] != "engine_ms"))
    by = {(r["chunks"], r["variant"]): r["ms"] for r in rows}
    floor = names[0]
    chars = {r["variant"]: r["chars"] for r in rows if "chars" in r}
    lines = ["| variant | " + " | ".join(f"{s // 1000}k p50 / p99 ms | x floor p50" for s in sizes)
             + " | request chars |", "|---|" + "---|---|" * len(sizes) + "---|"]
    for name in names:
        cells = []
        for size in sizes:
            ms = by[(size, name)]
            cells.append(f"{pct(ms, .5):.1f} / {pct(ms, .99):.1f} | {pct(ms, .5) / pct(by[(size, floor)], .5):.1f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {chars[name]} |")
    for size in sizes:
        own = by.get((size, "engine_ms"))
        if own:
            lines.append(f"\n{size // 1000}k: the engine's own clock (first dependency to the provider request) "
                         f"p50 {pct(own, .5):.1f} / p99 {pct(own, .99):.1f} ms; the rest of its row is the HTTP "
                         "hop to it, uvicorn and the SDK's request.")
    return "\n".join(lines)


def ingest_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| dimensions | loader | chunks | seconds (index) | chunks/s | engine / this |",
             "|---|---|---|---|---|---|"]
    for dim in dict.fromkeys(r["dim"] for r in rows):
        mine = [r for r in rows if r["dim"] == dim]
        engine_rate = mine[0]["rows"] / mine[0]["wall"]
        for r in mine:
            rate = r["rows"] / r["wall"]
            index = f"{r['index']:.0f} index" if r["index"] else "index live"
            lines.append(f"| {dim} | {r['loader']} | {r['rows']} | {r['wall']:.1f} ({index}) | {rate:.0f} | "
                         f"{engine_rate / rate:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("turns", "ingest"))
    parser.add_argument("--chunks", default="10000",
                        help="comma-separated corpus sizes (turns: each; ingest: the largest)")
    parser.add_argument("--dims", default="1536,512", help="ingestion: comma-separated embedding dimensions")
    parser.add_argument("--turns", type=int, default=300, help="measured turns per variant and size")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--plain", action="store_true", help="ingestion: bench/ingest.py's plain loader too")
    parser.add_argument("--embed-latency-ms", type=float, default=0.0,
                        help="ingestion: the embeddings stand-in waits this long per request (a real API's round trip)")
    parser.add_argument("--loaders", default="langchain,llamaindex",
                        help="ingestion: which frameworks' loaders run beside the engine (langchain, llamaindex)")
    args = parser.parse_args()
    loaders = tuple(name for name in args.loaders.split(",") if name)
    if unknown := set(loaders) - {"langchain", "llamaindex"}:
        parser.error(f"unknown loader {', '.join(sorted(unknown))}: choose from langchain, llamaindex")
    sizes = [int(s) for s in args.chunks.split(",")]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {versions()}", flush=True)
    turns: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    began = time.perf_counter()
    if args.only in (None, "turns"):
        from bench import frameworks_turns

        with local_stack("bench-frameworks-") as stack:
            create_database(stack, "bench")
            frameworks_turns.run(sizes, args.turns, args.warmup, turns)
        print(f"\nTurn start to the model request ({args.turns} turns per variant after {args.warmup} warm-up, "
              f"load average {os.getloadavg()[0]:.1f}):\n\n{turns_table(turns)}\n", flush=True)
    if args.only in (None, "ingest"):
        from bench import frameworks_ingest

        frameworks_ingest.run(max(sizes), [int(d) for d in args.dims.split(",")], args.plain,
                              args.embed_latency_ms, loads, loaders)
        print(f"\nIngestion end to end, HNSW index included (embeddings stand-in latency "
              f"{args.embed_latency_ms:.0f} ms a request, load average {os.getloadavg()[0]:.1f}):\n\n"
              f"{ingest_table(loads)}\n", flush=True)
    print(f"done in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
