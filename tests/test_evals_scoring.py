"""The per-case checks as pure functions: ranks, citation marks and quotes (the offline answerer's own quotes
pass, made-up ones fail), key facts, metrics that nothing measured."""

from __future__ import annotations

from shared.evals.scoring import citation_checks, facts_found, quoted_from, run_metrics, source_rank
from shared.llm.offline import best_quote

PASSAGE = ("Uploads\nFlask limits uploads with MAX_CONTENT_LENGTH.\nSet it in the config.\n"
           "A larger request fails with 413 Request Entity Too Large. The limit counts the whole body.")


LINES = ("Configuration keys\nMAX_CONTENT_LENGTH limits the size of uploads\nOther settings live elsewhere\n"
         "Uploads over the limit fail with 413")


def test_the_offline_answerers_quotes_are_valid_even_when_they_join_distant_lines() -> None:
    for passage, question in [(PASSAGE, "What happens when an upload is too large for MAX_CONTENT_LENGTH?"),
                              (LINES, "Do uploads over MAX_CONTENT_LENGTH fail?")]:
        quote = best_quote(passage, question)
        assert quote and quote not in passage  # lines from apart, joined without a full stop between them
        answer = f"No language model is configured.\n\n> {quote} [1]"
        assert citation_checks(answer, {1: passage}) == [{"index": 1, "valid": True}], quote


def test_made_up_quotes_and_marks_are_caught() -> None:
    assert not quoted_from("Flask limits uploads with a firewall", "flask limits uploads with max_content_length")
    assert not quoted_from("limits request fails with set", "flask limits uploads set it request fails with")
    checks = citation_checks('It says "uploads are unlimited" [1] and [2, 3].', {1: PASSAGE, 2: PASSAGE})
    assert checks == [{"index": 1, "valid": False, "problem": "quote not in passage", "quote": "uploads are unlimited"},
                      {"index": 2, "valid": True}, {"index": 3, "valid": False, "problem": "no such passage"}]


def test_ranks_are_by_chunk_or_by_distinct_page() -> None:
    passages = [{"chunk_id": "a1", "document_id": "a", "url": "https://x/a"},
                {"chunk_id": "a2", "document_id": "a", "url": "https://x/a"},
                {"chunk_id": "b1", "document_id": "b", "url": "https://x/b/"}]
    assert source_rank([{"chunk_id": "b1"}], passages) == 3
    assert source_rank([{"url": "HTTPS://x/b"}], passages) == 2 and source_rank([{"document_id": "a"}], passages) == 1
    assert source_rank([{"url": "https://x/c"}], passages) is None


def test_facts_ignore_case_and_punctuation_and_unmeasured_metrics_are_null() -> None:
    assert facts_found("Refunds take 14 days, by bank-transfer.", ["14 Days", "bank transfer", "cash"]) == [
        True, True, False]
    metrics = run_metrics([{"status": "done", "expected": {"question": "q"}, "scores": {}, "abstained": False,
                            "timings": {}, "usage": {}, "cost_usd": None}], "lexical")
    assert metrics["hit@5"] is None and metrics["abstain_precision"] is None and metrics["key_fact_recall"] is None
    assert metrics["cost_unknown_cases"] == 1 and metrics["cases"] == 1
