"""Which passages an answer cites ([n], [n, m], [n][m]) and the sources a reply lists (shared.dialog.prompting)."""

from __future__ import annotations

from shared.dialog.prompting import QUOTE_CHARS, citations, cited_indices


def passage(index: int, text: str = "Some passage text.", **fields: object) -> dict[str, object]:
    return {"index": index, "title": f"Page {index}", "url": f"https://docs.example/{index}", "chunk_id": f"c{index}",
            "text": text, "score": 0.5, **fields}


def test_citations_are_read_in_order_of_first_use_without_repeats() -> None:
    assert cited_indices("Reset it in Settings [2]. Invoices come monthly [1, 3][2].") == [2, 1, 3]
    assert cited_indices("Both apply [4 ,5] and [5,4].") == [4, 5]


def test_text_that_only_looks_like_a_citation_is_not_one() -> None:
    assert cited_indices("No brackets here, a list [a] or [ ] or a link [docs](https://x) or [1234].") == []
    assert cited_indices("") == []


def test_a_reply_lists_the_passages_it_cites_in_passage_order() -> None:
    given = [passage(1), passage(2), passage(3)]
    assert [c["index"] for c in citations("See [3], then [1].", given)] == [1, 3]


def test_a_reply_citing_nothing_lists_every_passage_it_was_given() -> None:
    given = [passage(2), passage(1)]
    assert [c["index"] for c in citations("An answer without any marker.", given)] == [1, 2]


def test_a_citation_of_a_passage_that_was_not_given_is_dropped() -> None:
    given = [passage(1), passage(2)]
    assert [c["index"] for c in citations("Made up [7], real [2].", given)] == [2]
    # Only invented numbers: as if nothing were cited.
    assert [c["index"] for c in citations("Made up [7].", given)] == [1, 2]


def test_a_citation_carries_a_short_quote_on_one_line_and_a_rounded_score() -> None:
    long_text = "word\n\n  " * 400
    [cited] = citations("[1]", [passage(1, long_text, score=0.123456789)])
    assert len(cited["quote"]) <= QUOTE_CHARS and cited["quote"].endswith("…")
    assert "\n" not in cited["quote"] and "  " not in cited["quote"]
    assert cited["score"] == 0.1235
    assert {k: cited[k] for k in ("title", "url", "chunk_id")} == {
        "title": "Page 1", "url": "https://docs.example/1", "chunk_id": "c1"}
    [short] = citations("[1]", [passage(1, "Short.", score=None)])
    assert short["quote"] == "Short." and short["score"] == 0.0
