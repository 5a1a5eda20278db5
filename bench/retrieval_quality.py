"""Retrieval quality on real documentation: hit@1, hit@5 and MRR of keyword, vector and hybrid search next to
a plain page-level BM25 (bm25s) over the same pages, computed in the same run.

    python bench/retrieval_quality.py [--sets flask,gimp-de] [--top-k 20] [--keep]
                                      [--local-model multilingual-e5-small] [--hybrid-weights 0.1,0.25]
                                      [--dump FILE]

Starts the embedded stack (PostgreSQL, Redis, the QStash stand-in delivering to the served API, the local
embeddings model) in a temporary folder. Each set of tests/corpora with a bench/corpora/<set>/questions.jsonl
({"question", "expected": [paths]}) is served on loopback and ingested as a `site` source through the
engine's own pipeline (crawl, extraction, chunking, embeddings, COPY). Vector and hybrid use whatever
OpenAI-compatible embeddings endpoint the settings name (EMBEDDING_BASE_URL / OPENAI_API_KEY); when none is
set, the local stack's model: WordLlama, or with --local-model multilingual-e5-small the stronger E5, which
embeds a few chunks a second on two cores: the sets are then crawled keyword-only and every chunk embedded
afterwards by `vectorize all` in this process (about 8 minutes for Flask's 627 chunks here). The line
"embeddings:" says which model served the run.

Results are judged per page: a mode's chunks are reduced to their pages in rank order (first chunk of a page
counts), and a question is a hit@k when one of its expected pages is among the first k pages. The BM25
baseline indexes each page's text as the engine extracted it (its chunks in order, title included), with
Snowball stemming and stop words of the set's language.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    QUESTIONS,
    STEMMERS,
    create_database,
    embeddings_api_named,
    engine_in_thread,
    ingest_corpus,
    load_questions,
    local_stack,
)
from scripts.local_embeddings import E5_MODEL_NAME  # noqa: E402

MODES = ("keyword", "vector", "hybrid")


@dataclass
class Score:
    ranks: list[int | None] = field(default_factory=list)  # 1-based rank of the first expected page
    evidence: list[float] = field(default_factory=list)     # the best passage's, per on-topic question
    offtopic: list[float] = field(default_factory=list)     # the same for off-topic questions
    misses: list[str] = field(default_factory=list)         # questions not answered in the top 5, with what was

    def hit(self, k: int) -> float:
        return sum(1 for r in self.ranks if r is not None and r <= k) / max(len(self.ranks), 1)

    @property
    def mrr(self) -> float:
        return sum(1 / r for r in self.ranks if r is not None) / max(len(self.ranks), 1)


def first_hit(pages: list[str], expected: set[str]) -> int | None:
    return next((i + 1 for i, page in enumerate(pages) if page in expected), None)


def distinct(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def page_texts(conn: Any, source_id: str, base: str) -> dict[str, str]:
    rows = conn.execute("""SELECT d.url, d.title, string_agg(c.heading_path || E'\n' || c.text, E'\n'
                                                            ORDER BY c.ordinal) AS body
                           FROM documents d JOIN chunks c ON c.document_id = d.id
                           WHERE d.source_id = %s GROUP BY d.url, d.title""", (source_id,)).fetchall()
    return {r["url"].removeprefix(base + "/"): f"{r['title'] or ''}\n{r['body']}" for r in rows}


def bm25_ranks(texts: dict[str, str], questions: list[dict[str, Any]], language: str, top: int) -> Score:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer(STEMMERS.get(language, "english"))
    paths = list(texts)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([texts[p] for p in paths], stopwords=language, stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    score = Score()
    for q in questions:
        tokens = bm25s.tokenize([q["question"]], stopwords=language, stemmer=stemmer, show_progress=False)
        results, _ = retriever.retrieve(tokens, k=min(top, len(paths)), show_progress=False)
        score.ranks.append(first_hit([paths[i] for i in results[0]], set(q["expected"])))
    return score


def engine_ranks(conn: Any, ids: dict[str, str], questions: list[dict[str, Any]], offtopic: list[dict[str, Any]],
                 base: str, mode: str, top: int) -> Score:
    from shared.knowledge.retrieval import evidence, retrieve

    score = Score()
    for q in questions + offtopic:
        passages = retrieve(conn, workspace_id=ids["ws"], assistant_id=ids["asst"], query=q["question"],
                            top_k=top, mode=mode)  # type: ignore[arg-type]
        if "expected" not in q:
            score.offtopic.append(evidence(passages))
            continue
        score.evidence.append(evidence(passages))
        pages = distinct([(p.url or "").removeprefix(base + "/") for p in passages])
        score.ranks.append(first_hit(pages, set(q["expected"])))
        if score.ranks[-1] is None or score.ranks[-1] > 5:
            score.misses.append(f"{q['question']} -> {pages[:3]} (expected {q['expected']})")
    return score


def candidate_lists(conn: Any, ids: dict[str, str], questions: list[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    """Each question's keyword and vector lists (the pools hybrid fuses), for trying fusions offline (--dump)."""
    from shared.knowledge.retrieval import retrieve

    dumped = []
    for q in questions:
        entry: dict[str, Any] = {"question": q["question"], "expected": q.get("expected")}
        for mode in ("keyword", "vector"):
            passages = retrieve(conn, workspace_id=ids["ws"], assistant_id=ids["asst"], query=q["question"],
                                top_k=100, mode=mode)  # type: ignore[arg-type]
            entry[mode] = [[p.chunk_id, (p.url or "").removeprefix(base + "/"),
                            p.keyword_score if mode == "keyword" else p.vector_score] for p in passages]
        dumped.append(entry)
    return dumped


@dataclass
class Ingested:
    name: str
    ids: dict[str, str]
    source: dict[str, Any]
    base: str
    seconds: float


def ingest_set(name: str, engine_url: str, base: str) -> Ingested:
    """A workspace and assistant for the set, and its site crawled through the engine's own pipeline."""
    from shared.core.db import connect
    from shared.guard.auth import create_workspace

    with connect() as conn:
        workspace, key = create_workspace(conn, f"bench {name}")
        ids = {"ws": workspace["id"]}
        ids["asst"] = conn.execute("INSERT INTO assistants (workspace_id, name, template_id) VALUES (%s, %s, "
                                   "'default') RETURNING id", (ids["ws"], name)).fetchone()["id"]
    began = time.perf_counter()
    source = ingest_corpus(engine_url, key, ids["asst"], name, base)
    return Ingested(name, ids, source, base, time.perf_counter() - began)


@contextlib.contextmanager
def hybrid_vector_weight(weight: float) -> Iterator[None]:
    """HYBRID_VECTOR_WEIGHT set to `weight` for the searches inside (the engine reads it per search)."""
    from shared.core.settings import get_settings

    before = os.environ.get("HYBRID_VECTOR_WEIGHT")
    os.environ["HYBRID_VECTOR_WEIGHT"] = str(weight)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HYBRID_VECTOR_WEIGHT")
        else:
            os.environ["HYBRID_VECTOR_WEIGHT"] = before
        get_settings.cache_clear()


def score_set(ingested: Ingested, top: int, dump: dict[str, Any] | None = None,
              weights: tuple[float, ...] = ()) -> list[tuple[str, Score]]:
    from shared.core.db import connect
    from tests import corpora

    name, ids, source, base = ingested.name, ingested.ids, ingested.source, ingested.base
    questions = load_questions(name)
    offtopic = [{"question": q["question"]} for q in load_questions(name, "offtopic.jsonl")]
    with connect() as conn:
        texts = page_texts(conn, source["id"], base)
        print(f"{name}: {len(texts)} pages, {source['chunks_count']} chunks, {len(questions)} questions, "
              f"ingested in {ingested.seconds:.0f} s (status {source['status']}, "
              f"embeddings {source['embeddings']})", flush=True)
        results = [("BM25 (bm25s, page level)", bm25_ranks(texts, questions, corpora.LANGUAGE[name], top))]
        for mode in MODES:
            results.append((mode, engine_ranks(conn, ids, questions, offtopic, base, mode, top)))
        for weight in weights:
            with hybrid_vector_weight(weight):
                results.append((f"hybrid, vector weight {weight:g}",
                                engine_ranks(conn, ids, questions, offtopic, base, "hybrid", top)))
        if dump is not None:
            dump[name] = {"questions": candidate_lists(conn, ids, questions, base),
                          "bm25": {"hit@5": results[0][1].hit(5), "mrr": results[0][1].mrr}}
    return results


def vectorize_afterwards() -> None:
    """`vectorize all` in this process, for a model too slow to embed inside page jobs (the local E5: a few
    chunks a second, where a job delivery has 30 s): the sets were crawled keyword-only, and now every chunk
    is embedded with the settings' model, as an operator switching models would."""
    from scripts.cmd_vectorize import cmd_all

    started = time.perf_counter()
    args = argparse.Namespace(workspace=None, assistant=None, source=None, batch=64, missing=True,
                              restart=True, queue=False, reindex=True, resize=False)
    if cmd_all(args):
        raise SystemExit("vectorize all failed")
    print(f"vectors: every chunk embedded in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="", help="comma-separated set names (default: every set with questions)")
    parser.add_argument("--top-k", type=int, default=20, help="passages retrieved per question")
    parser.add_argument("--local-model", default="",
                        help="the local stack's model when no embeddings API is named: wordllama-l2-supercat "
                             "(default) or multilingual-e5-small")
    parser.add_argument("--hybrid-weights", default="",
                        help="also score hybrid at these HYBRID_VECTOR_WEIGHT values (comma-separated), one row each")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stack's folder")
    parser.add_argument("--misses", action="store_true", help="print the questions each engine mode missed")
    parser.add_argument("--dump", default="", help="write each question's keyword and vector lists to this JSON file "
                                                   "(bench/fusion_replay.py replays fusions on it)")
    parser.add_argument("--abstain", type=float, default=0.5, help="abstain_threshold to report on (0..1)")
    args = parser.parse_args()

    from tests import corpora

    names = [n for n in (args.sets.split(",") if args.sets else corpora.NAMES)
             if (QUESTIONS / n / "questions.jsonl").exists()]
    if not names:
        print("no question sets found under bench/corpora/<set>/questions.jsonl")
        return 1

    with local_stack("bench-quality-", keep=args.keep) as stack:
        os.environ["ALLOW_PRIVATE_HOSTS"] = "loopback"
        embed_later = False
        if not embeddings_api_named():
            local = stack.embeddings_env(args.local_model)
            os.environ.update(local)
            embed_later = local["EMBEDDING_MODEL"] == E5_MODEL_NAME
            if embed_later:
                os.environ.pop("EMBEDDING_BASE_URL")  # crawled keyword-only; embedded by vectorize_afterwards
        from shared.core.settings import get_settings
        from shared.knowledge.embeddings import clear_caches, describe_embeddings

        create_database(stack, "quality")
        with engine_in_thread() as engine_url, contextlib.ExitStack() as sites:
            ingested = [ingest_set(name, engine_url, sites.enter_context(corpora.serve(name))) for name in names]
            if embed_later:
                os.environ["EMBEDDING_BASE_URL"] = local["EMBEDDING_BASE_URL"]
                get_settings.cache_clear()
                clear_caches()
                vectorize_afterwards()
            print(f"embeddings: {describe_embeddings()} (model {get_settings().embedding_model})", flush=True)
            dump: dict[str, Any] | None = {} if args.dump else None
            weights = tuple(float(w) for w in args.hybrid_weights.split(",") if w.strip())
            table = [(one.name, score_set(one, args.top_k, dump, weights)) for one in ingested]
            if dump is not None:
                Path(args.dump).write_text(json.dumps(dump))
    print()
    print("| set | mode | hit@1 | hit@5 | MRR |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, results in table:
        for mode, score in results:
            print(f"| {name} ({len(score.ranks)} q) | {mode} | {score.hit(1):.2f} | {score.hit(5):.2f} "
                  f"| {score.mrr:.3f} |")
    if args.misses:
        for name, results in table:
            for mode, score in results:
                for miss in score.misses:
                    print(f"miss {name} {mode}: {miss}")
    print()
    print(f"Abstaining at abstain_threshold {args.abstain} "
          "(shared.knowledge.retrieval.evidence: the best normalised BM25, else cosine):")
    print("| set | mode | on-topic answered | off-topic abstained | evidence on-topic (median) | off-topic (median) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, results in table:
        for mode, score in results:
            if not score.offtopic:
                continue
            answered = sum(e >= args.abstain for e in score.evidence) / max(len(score.evidence), 1)
            abstained = sum(e < args.abstain for e in score.offtopic) / len(score.offtopic)
            print(f"| {name} | {mode} | {answered:.2f} | {abstained:.2f} | {statistics.median(score.evidence):.2f} | "
                  f"{statistics.median(score.offtopic):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
