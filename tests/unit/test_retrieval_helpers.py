"""The parts of keyword search that are plain arithmetic and text (shared.knowledge.retrieval), checked without a
database: which words a question searches for, and the SQL that reads a word's occurrences back from ts_rank."""

from __future__ import annotations

import math
import re

from shared.knowledge.retrieval import MAX_TERMS, _occurrences, query_words

ZETA2 = math.pi ** 2 / 6


def test_a_question_is_searched_by_its_words_without_operators() -> None:
    assert query_words("How do I reset my password?") == ["How", "do", "I", "reset", "my", "password"]
    assert query_words("cats OR dogs & !birds | 'fish'") == ["cats", "dogs", "birds", "fish"]
    assert query_words("Größe der Wohnung") == ["Größe", "der", "Wohnung"]
    assert len(query_words(" ".join(f"w{n}" for n in range(100)))) == MAX_TERMS
    assert query_words("?!") == []


def occurrences_from_rank(rank: float) -> int:
    """_occurrences' SQL evaluated in Python for one ts_rank value (PostgreSQL's round: half away from zero)."""
    sql = _occurrences("{1, 1, 1, 1}")
    expression = re.sub(r"ts_rank\('[^']*', d\.tsv, t\.q\)::float8", repr(rank), sql)
    python = expression.replace("greatest", "max").replace("round", "_round")
    return int(eval(python, {"max": max, "_round": lambda x: math.floor(x + 0.5)}))  # our own SQL text, no input


def test_the_occurrence_count_is_read_back_exactly_from_ts_rank_up_to_255() -> None:
    # ts_rank of one lexeme with n positions and all weights 1: H(n) / (pi^2/6), H(n) = sum of 1/j^2 for j <= n.
    for n in range(1, 256):
        rank = sum(1 / j ** 2 for j in range(1, n + 1)) / ZETA2
        assert occurrences_from_rank(rank) == n, n
    assert occurrences_from_rank(0.0) == 0
