"""Per-case checks and per-run metrics: pure functions over plain values (no database, no network).

Definitions (README "Evaluations"):
- rank: the 1-based position of the first expected source among the retrieved passages; an expected
  `chunk_id` is ranked among chunks, an expected `url` or `document_id` among distinct pages (a page's first
  chunk counts), as bench/retrieval_quality.py does. hit@k = share of cases with expected sources ranked <= k;
  MRR = mean of 1/rank (0 when not found).
- citation validity: every [n] in the answer must name a passage the model was given, and a quoted span
  (a `> ...` line or "..." text) before the mark must really be in that passage. Share of valid marks.
- key-fact recall: share of the cases' key facts found in the answer (case, spacing and punctuation aside).
- abstain precision / recall, with "abstained" as the positive: precision = share of abstentions that were
  on cases expecting one; recall = share of cases expecting one that got one.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

HIT_KS = (1, 3, 5)
MARK = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
QUOTED = re.compile(r"^\s*>\s?(.+?)\s*$|[\"“](.+?)[\"”]", re.MULTILINE)
# Higher is better for these; the rest (latency, tokens, cost) are better lower.
QUALITY = ("hit@1", "hit@3", "hit@5", "mrr", "citation_validity", "key_fact_recall", "abstain_precision",
           "abstain_recall", "answer_support")
MIN_RUN = 3
LOWER_IS_BETTER = ("ttft_p50_ms", "ttft_p95_ms", "tokens_per_case", "cost_usd")


def normalise(text: str) -> str:
    """Lower case, accents kept, every run of non-word characters one space: what quote and fact checks compare."""
    text = unicodedata.normalize("NFKC", text).lower().replace("…", " ")
    return " ".join(re.findall(r"\w+", text))


def source_rank(expected: list[dict[str, Any]], passages: list[dict[str, Any]]) -> int | None:
    """The best rank of any expected source among `passages` (in retrieval order), or None."""
    best: int | None = None
    pages: list[tuple[str | None, str | None]] = []
    for p in passages:
        page = (p.get("document_id"), _url(p.get("url")))
        if page not in pages:
            pages.append(page)
    for want in expected:
        rank = None
        if want.get("chunk_id"):
            rank = next((i + 1 for i, p in enumerate(passages) if p.get("chunk_id") == want["chunk_id"]), None)
        elif want.get("document_id"):
            rank = next((i + 1 for i, (doc, _) in enumerate(pages) if doc == want["document_id"]), None)
        elif want.get("url"):
            rank = next((i + 1 for i, (_, url) in enumerate(pages) if url == _url(want["url"])), None)
        if rank is not None and (best is None or rank < best):
            best = rank
    return best


def _url(url: str | None) -> str | None:
    return url.strip().rstrip("/").lower() if url else None


def citation_checks(answer: str, given: dict[int, str]) -> list[dict[str, Any]]:
    """One check per [n] mark: `given` maps the passage numbers the model saw to their full text. A mark is
    valid when its number was given and every quoted span since the previous mark is in that passage."""
    checks: list[dict[str, Any]] = []
    previous_end = 0
    for match in MARK.finditer(answer):
        numbers = [int(n) for n in re.split(r"\s*,\s*", match.group(1))]
        spans = [a or b for a, b in QUOTED.findall(answer[previous_end:match.start()]) if (a or b).strip()]
        # A `> quote [n]` line: the mark sits on the quoted line itself.
        line_start = answer.rfind("\n", 0, match.start()) + 1
        line = answer[line_start:match.start()].strip()
        if line.startswith(">") and not spans:
            spans = [line.lstrip("> ").strip()]
        for number in numbers:
            text = given.get(number)
            check: dict[str, Any] = {"index": number, "valid": text is not None}
            if text is None:
                check["problem"] = "no such passage"
            else:
                passage = normalise(text)
                missing = [span for span in spans if not quoted_from(span, passage)]
                if missing:
                    check.update(valid=False, problem="quote not in passage", quote=missing[0][:200])
            checks.append(check)
        previous_end = match.end()
    return checks


def quoted_from(span: str, passage: str) -> bool:
    """Whether `span` is made of runs of the (normalised) passage. A quote may join sentences that stand apart
    in the passage (the offline answerer does), so the span is cut greedily into the longest runs the passage
    holds; a word the passage lacks fails it, and so does stitching: at most a quarter of the words may sit
    in runs shorter than MIN_RUN words. (Whole runs of real text stitched together still pass.)"""
    words, text = normalise(span).split(), f" {passage} "
    start = stitched = 0
    while start < len(words):
        end = start
        while end < len(words) and f" {' '.join(words[start:end + 1])} " in text:
            end += 1
        if end == start:
            return False
        if end - start < MIN_RUN:
            stitched += end - start
        start = end
    return stitched * 4 <= len(words) or len(words) < MIN_RUN


def facts_found(answer: str, facts: list[str]) -> list[bool]:
    text = normalise(answer)
    return [normalise(f) in text for f in facts]


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2): exact on small runs, no interpolation to explain."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def case_passed(expected: dict[str, Any], scores: dict[str, Any], abstained: bool) -> bool:
    """One verdict per case, for comparing runs: abstained when it should, else found, cited and said the facts."""
    if expected.get("expect_abstain"):
        return abstained
    if abstained:
        return False
    rank = scores.get("rank")
    if expected.get("expected_sources") and (rank is None or rank > 5):
        return False
    if not all(scores.get("facts") or [True]):
        return False
    return all(c["valid"] for c in scores.get("citations") or [])


def _share(hits: Iterable[bool]) -> float | None:
    values = list(hits)
    return round(sum(values) / len(values), 4) if values else None


def run_metrics(results: list[dict[str, Any]], support_method: str) -> dict[str, Any]:
    """The run's metrics from its finished case rows (expected, scores, abstained, timings, usage, cost_usd).

    A metric that no case measures (no case with key facts, no abstain case) is None, never 0 or 1."""
    done = [r for r in results if r.get("status") == "done"]
    sourced = [r for r in done if r["expected"].get("expected_sources") and not r["expected"].get("expect_abstain")]
    ranks = [r["scores"].get("rank") for r in sourced]
    metrics: dict[str, Any] = {f"hit@{k}": _share(rank is not None and rank <= k for rank in ranks) for k in HIT_KS}
    metrics["mrr"] = round(sum(1 / r for r in ranks if r) / len(ranks), 4) if ranks else None
    marks = [c["valid"] for r in done for c in r["scores"].get("citations") or []]
    metrics["citation_validity"] = _share(marks)
    metrics["key_fact_recall"] = _share(f for r in done for f in r["scores"].get("facts") or [])
    abstained = [r for r in done if r["abstained"]]
    expecting = [r for r in done if r["expected"].get("expect_abstain")]
    metrics["abstain_precision"] = _share(bool(r["expected"].get("expect_abstain")) for r in abstained)
    metrics["abstain_recall"] = _share(bool(r["abstained"]) for r in expecting)
    support = [r["scores"]["support"] for r in done if r["scores"].get("support") is not None]
    metrics["answer_support"] = round(math.fsum(support) / len(support), 4) if support else None
    metrics["answer_support_method"] = support_method
    ttft = [float(r["timings"]["ttft_ms"]) for r in done if (r.get("timings") or {}).get("ttft_ms") is not None]
    metrics["ttft_p50_ms"], metrics["ttft_p95_ms"] = percentile(ttft, 0.5), percentile(ttft, 0.95)
    tokens_in = sum(int((r.get("usage") or {}).get("input_tokens", 0)) for r in done)
    tokens_out = sum(int((r.get("usage") or {}).get("output_tokens", 0)) for r in done)
    metrics["tokens_in"], metrics["tokens_out"] = tokens_in, tokens_out
    metrics["tokens_per_case"] = round((tokens_in + tokens_out) / len(done), 1) if done else None
    costs = [r.get("cost_usd") for r in done]
    metrics["cost_usd"] = round(sum(c for c in costs if c is not None), 6)
    metrics["cost_unknown_cases"] = sum(1 for c in costs if c is None)
    metrics["cases"], metrics["cases_failed"] = len(results), sum(1 for r in results if r.get("status") == "error")
    metrics["passed"] = sum(1 for r in done if case_passed(r["expected"], r["scores"], bool(r["abstained"])))
    return metrics


def worse_by(metric: str, baseline: float | None, candidate: float | None) -> float | None:
    """How much worse `candidate` is than `baseline` (> 0 = worse): absolute for quality shares, relative
    (a fraction of the baseline) for latency, tokens and cost. None when either side wasn't measured."""
    if baseline is None or candidate is None:
        return None
    if metric in LOWER_IS_BETTER:
        return (candidate - baseline) / baseline if baseline else (1.0 if candidate > 0 else 0.0)
    return baseline - candidate
