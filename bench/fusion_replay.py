"""Replay hybrid fusion rules on the keyword and vector lists that `bench/retrieval_quality.py --dump FILE` wrote,
with leave-one-set-out: how the engine's rule (shared/knowledge/retrieval.py) was chosen, and a way to check it again
for another embedding model.

    python bench/retrieval_quality.py --dump /tmp/lists.json && python bench/fusion_replay.py /tmp/lists.json

Each rule ranks the union of a question's two lists (cut to the pool retrieve() uses for that top_k); results
are judged per page as in the benchmark. A rule is chosen on three sets by (sets where its hit@5 is at least
keyword search's and, at top_k 20 or more, page-level BM25's; then hit@5 + MRR gained over keyword search) and
scored on the fourth.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from typing import Any

Lists = list[list[Any]]  # [chunk id, page, score] in rank order
Rule = Callable[[Lists, Lists], list[str]]
K = 60


def rrf(weight_of: Callable[[float], float]) -> Rule:
    """RRF whose vector weight is a function of the keyword evidence (the best keyword_score, capped at 1)."""
    def rank(kw: Lists, vec: Lists) -> list[str]:
        vw = weight_of(min(max((s for _, _, s in kw), default=0.0), 1.0))
        scores: dict[str, list[float]] = {}
        for i, (c, _, _) in enumerate(kw):
            scores.setdefault(c, [0.0, 9999, 9999])[:2] = [1 / (K + i + 1), i]
        for i, (c, _, _) in enumerate(vec):
            entry = scores.setdefault(c, [0.0, 9999, 9999])
            entry[0] += vw / (K + i + 1)
            entry[2] = i
        return sorted(scores, key=lambda c: (-scores[c][0], scores[c][1], scores[c][2], c))
    return rank


def convex(alpha: float) -> Rule:
    """alpha * keyword_score + (1 - alpha) * similarity (a list's lowest similarity for a chunk it lacks)."""
    def rank(kw: Lists, vec: Lists) -> list[str]:
        ks = {c: min(s, 1.0) for c, _, s in kw}
        ss = {c: s for c, _, s in vec}
        floor = min(ss.values(), default=0.0)
        fused = {c: alpha * ks.get(c, 0.0) + (1 - alpha) * ss.get(c, floor) for c in set(ks) | set(ss)}
        return sorted(fused, key=lambda c: (-fused[c], c))
    return rank


def margin(weight: float, nth: int = 20) -> Rule:
    """keyword_score + weight * (similarity above the nth neighbour's): the vector list's own evidence."""
    def rank(kw: Lists, vec: Lists) -> list[str]:
        ks = {c: min(s, 1.0) for c, _, s in kw}
        ss = {c: s for c, _, s in vec}
        floor = vec[min(nth, len(vec)) - 1][2] if vec else 0.0
        fused = {c: ks.get(c, 0.0) + weight * max(0.0, ss.get(c, floor) - floor) for c in set(ks) | set(ss)}
        return sorted(fused, key=lambda c: (-fused[c], c))
    return rank


def rules() -> dict[str, Rule]:
    out: dict[str, Rule] = {"keyword": lambda kw, vec: [c for c, _, _ in kw]}
    for w in (0.05, 0.1, 0.25, 0.5, 1.0):
        out[f"rrf w={w}"] = rrf(lambda e, w=w: w)
    for gate, low, high in itertools.product((0.4, 0.5, 0.6, 0.7), (0.5, 1.0, 2.0), (0.0, 0.05, 0.1, 0.2)):
        out[f"gate {gate}: w={low} below, {high} above"] = rrf(lambda e, g=gate, lo=low, hi=high: lo if e < g else hi)
    for alpha in (0.5, 0.6, 0.7, 0.8, 0.9):
        out[f"convex a={alpha}"] = convex(alpha)
    for w in (0.25, 0.5, 1.0, 1.5):
        out[f"margin w={w}"] = margin(w)
    return out


def score(rule: Rule, questions: list[dict[str, Any]], top_k: int) -> tuple[float, float, float]:
    pool = min(max(top_k * 4, 20), 100)  # as shared.knowledge.retrieval.retrieve
    ranks = []
    for q in questions:
        kw, vec = q["keyword"][:pool], q["vector"][:pool]
        page = {c: p for c, p, _ in kw + vec}
        pages = list(dict.fromkeys(page[c] for c in rule(kw, vec)[:top_k]))
        ranks.append(next((i + 1 for i, p in enumerate(pages) if p in set(q["expected"])), None))
    n = max(len(ranks), 1)
    return (sum(r == 1 for r in ranks) / n, sum(1 for r in ranks if r and r <= 5) / n,
            sum(1 / r for r in ranks if r) / n)


def replay(data: dict[str, Any], candidates: dict[str, Rule], top_k: int) -> None:
    sets = list(data)
    table = {name: {s: score(rule, data[s]["questions"], top_k) for s in sets} for name, rule in candidates.items()}
    keyword = table["keyword"]

    def criterion(name: str, among: list[str]) -> tuple[int, float]:
        r = table[name]
        # BM25 ranks pages; only a list of 20 chunks or more reliably holds 5 pages to compare with it
        fine = sum(r[s][1] >= max(keyword[s][1], data[s]["bm25"]["hit@5"] if top_k >= 20 else 0) - 1e-9
                   for s in among)
        return fine, sum(r[s][1] - keyword[s][1] + r[s][2] - keyword[s][2] for s in among)

    print(f"\ntop_k {top_k}: hit@1 / hit@5 / MRR per set; best rules on all sets (in-sample)")
    for name in ["keyword"] + sorted(table, key=lambda n: criterion(n, sets), reverse=True)[:8]:
        print(f"  {name:34s}" + "  ".join(f"{s[:8]} {a:.2f}/{b:.2f}/{c:.3f}"
                                          for s, (a, b, c) in table[name].items()))
    gained = [0.0, 0.0, 0.0]
    for held in sets:
        chosen = max(table, key=lambda n: criterion(n, [s for s in sets if s != held]))
        got = table[chosen][held]
        gained = [g + x - y for g, x, y in zip(gained, got, keyword[held], strict=True)]
        print(f"  leave out {held}: chosen '{chosen}', there {got[0]:.2f}/{got[1]:.2f}/{got[2]:.3f} "
              f"(keyword {keyword[held][0]:.2f}/{keyword[held][1]:.2f}/{keyword[held][2]:.3f})")
    print("  held-out gain over keyword search, summed over sets: hit@1 {:+.3f}, hit@5 {:+.3f}, MRR {:+.3f}"
          .format(*gained))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dump", help="the file bench/retrieval_quality.py --dump wrote")
    parser.add_argument("--top-k", default="20,5", help="top_k values to replay at (the benchmark's, the template's)")
    parser.add_argument("--family", default="", help="only rules whose name starts so (rrf, gate, convex, margin)")
    args = parser.parse_args()
    with open(args.dump) as file:
        data = json.load(file)
    candidates = {n: r for n, r in rules().items() if n == "keyword" or n.startswith(args.family)}
    for top_k in (int(t) for t in args.top_k.split(",")):
        replay(data, candidates, top_k)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
