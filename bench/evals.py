"""An evaluation run over one benchmark site for two template versions that differ (top_k 3 vs 8), through the
engine's own API and job queue: the metrics table side by side, the gate's verdict on publishing the second.

    python bench/evals.py [--set flask] [--mode keyword] [--top-k 3,8] [--abstain 0.5] [--keep]

Starts the embedded stack (PostgreSQL, Redis, the QStash stand-in delivering to the served API) in a temporary
folder, serves tests/corpora/<set> on loopback and ingests it as a `site` source. The evaluation set is
bench/corpora/<set>/questions.jsonl (expected pages as URLs) plus offtopic.jsonl (expect_abstain). No model
key: the offline answerer answers (quotes with citations), so answer support is the lexical score and cost
is 0; with OPENAI_API_KEY set the template's model answers. Vector and hybrid modes use the local embeddings
model unless EMBEDDING_BASE_URL / OPENAI_API_KEY name another.
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

from bench._harness import (  # noqa: E402
    create_database,
    embeddings_api_named,
    engine_in_thread,
    ingest_corpus,
    load_questions,
    local_stack,
)

ROWS = ("hit@1", "hit@3", "hit@5", "mrr", "citation_validity", "key_fact_recall", "abstain_precision",
        "abstain_recall", "answer_support", "ttft_p50_ms", "ttft_p95_ms", "tokens_per_case", "cost_usd", "passed")


def cases_for(name: str, base: str) -> list[dict[str, Any]]:
    on_topic = [{"question": q["question"], "expected_sources": [{"url": f"{base}/{p}"} for p in q["expected"]],
                 "tags": [f"set:{name}"]} for q in load_questions(name)]
    off_topic = [{"question": q["question"], "expect_abstain": True, "tags": ["off-topic"]}
                 for q in load_questions(name, "offtopic.jsonl")]
    return on_topic + off_topic


def wait_run(api: Any, run_id: str) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = api.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.5)


def bench(name: str, engine_url: str, args: argparse.Namespace) -> None:
    import httpx

    from shared.core.db import connect
    from shared.guard.auth import create_workspace
    from tests import corpora

    first, second = (int(k) for k in args.top_k.split(","))
    with connect() as conn:
        _, key = create_workspace(conn, f"bench evals {name}")
    api = httpx.Client(base_url=engine_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    template = api.post("/api/templates", json={"name": f"{name} v1", "abstain_threshold": args.abstain,
                                                "retrieval": {"top_k": first, "mode": args.mode}}).json()
    assistant = api.post("/api/assistants", json={"name": name, "template_id": template["id"]}).json()
    with corpora.serve(name) as base:
        began = time.perf_counter()
        source = ingest_corpus(engine_url, key, assistant["id"], name, base)
        print(f"{name}: {source['pages_done']} pages, {source['chunks_count']} chunks ingested in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        cases = cases_for(name, base)
        eval_set = api.post("/api/evals/sets", json={"assistant_id": assistant["id"], "name": name,
                                                     "cases": cases}).json()
        api.put(f"/api/templates/{template['id']}/gate", json={"set_id": eval_set["id"]}).raise_for_status()
        api.patch(f"/api/templates/{template['id']}", json={"retrieval": {"top_k": second}}).raise_for_status()
        runs, seconds = [], []
        for version in (1, 2):
            began = time.perf_counter()
            run = api.post("/api/evals/runs", json={"set_id": eval_set["id"], "template_version": version}).json()
            runs.append(wait_run(api, run["id"]))
            seconds.append(time.perf_counter() - began)
    a, b = runs
    print(f"\n{len(cases)} cases ({sum(1 for c in cases if c.get('expect_abstain'))} off-topic), mode {args.mode}, "
          f"abstain_threshold {args.abstain}; answer support by {a['metrics']['answer_support_method']}")
    print(f"| metric | v1 top_k {first} | v2 top_k {second} | delta |")
    print("| --- | ---: | ---: | ---: |")
    diff = api.get(f"/api/evals/runs/{a['id']}/compare/{b['id']}").json()
    for row in ROWS:
        va, vb, delta = a["metrics"].get(row), b["metrics"].get(row), diff["metrics"].get(row, {}).get("delta")
        print(f"| {row} | {show(va)} | {show(vb)} | {show(delta)} |")
    print(f"| run wall time (s) | {seconds[0]:.1f} | {seconds[1]:.1f} | |")
    changed = diff["cases"]
    print(f"\ncases that changed: {len(changed)} "
          f"({sum(c['change'] == 'newly_failing' for c in changed)} newly failing, "
          f"{sum(c['change'] == 'newly_passing' for c in changed)} newly passing)")
    publish = api.post(f"/api/templates/{template['id']}/versions/2/publish")
    verdict = publish.json().get("verdict") or publish.json().get("error", {}).get("details") or {}
    failing = ", ".join(f["metric"] for f in verdict.get("failing", [])) or "none"
    print(f"publishing v2 through the gate: {publish.status_code} (failing metrics: {failing})")


def show(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="flask", help="a set of bench/corpora (default flask)")
    parser.add_argument("--mode", default="keyword", choices=("keyword", "vector", "hybrid"))
    parser.add_argument("--top-k", default="3,8", help="the two versions' top_k (default 3,8)")
    parser.add_argument("--abstain", type=float, default=0.5, help="the template's abstain_threshold")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stack's folder")
    args = parser.parse_args()

    with local_stack("bench-evals-", keep=args.keep) as stack:
        os.environ["ALLOW_PRIVATE_HOSTS"] = "loopback"
        if args.mode != "keyword" and not embeddings_api_named():
            os.environ.update(stack.embeddings_env())
        create_database(stack, "evals")
        with engine_in_thread() as engine_url:
            bench(args.set, engine_url, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
