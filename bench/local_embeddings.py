"""The local stack's embedding model (scripts/local_embeddings.py): load time, memory and throughput.

    python bench/local_embeddings.py [--texts 2000] [--words 300]

Prints: the import and load time of WordLlama (weights from the wheel), the process's peak RSS after
loading and after embedding, texts/s embedding in-process (`--words` words a text, about a chunk), and
texts/s through the OpenAI-compatible HTTP endpoint with the openai SDK in batches of 100 (what
ingestion sends), base64 (the SDK's default) and float. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ["server", "table", "row", "index", "query", "page", "setting", "password", "account", "invoice",
         "billing", "widget", "chat", "answer", "source", "crawl", "document", "search", "vector", "keyword",
         "language", "template", "limit", "email", "support", "hour", "office", "install", "configure",
         "update", "delete", "create", "open", "close", "start", "stop", "error"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--words", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(args.words)) + f" {i}." for i in range(args.texts)]
    print(f"baseline RSS {rss_mb():.0f} MB")

    from scripts import local_embeddings

    started = time.perf_counter()
    local_embeddings.import_wordllama()  # the import alone: numpy, tokenizers, safetensors
    imported = time.perf_counter()
    local_embeddings.load_model()
    loaded = time.perf_counter()
    print(f"import {imported - started:.2f} s, load {loaded - imported:.2f} s, peak RSS {rss_mb():.0f} MB")

    start = time.perf_counter()
    local_embeddings.embed(texts)
    took = time.perf_counter() - start
    print(f"in-process: {args.texts / took:,.0f} texts/s ({args.words} words each), peak RSS {rss_mb():.0f} MB")

    import openai

    from scripts._serve import serve_in_thread

    url, stop = serve_in_thread(local_embeddings.create_app())
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    try:
        for encoding in ("base64", "float"):
            start = time.perf_counter()
            for i in range(0, len(texts), 100):
                client.embeddings.create(input=texts[i:i + 100], model=local_embeddings.MODEL_NAME,
                                         encoding_format=encoding)  # type: ignore[arg-type]
            took = time.perf_counter() - start
            print(f"HTTP + openai SDK, batches of 100, {encoding}: {args.texts / took:,.0f} texts/s")
        start = time.perf_counter()
        for text in texts[:200]:
            client.embeddings.create(input=text[:80], model=local_embeddings.MODEL_NAME)
        print(f"one short query per request: {(time.perf_counter() - start) / 200 * 1000:.1f} ms each")
    finally:
        stop()
    print(f"peak RSS {rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
