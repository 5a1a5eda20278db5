"""Heading-aware chunking of a page's markdown (shared.knowledge.chunking)."""

from __future__ import annotations

from shared.knowledge.chunking import CHARS_PER_TOKEN, chunk_markdown, estimate_tokens, sections, split_long

PAGE = """Intro before any heading.

# Account
## Password
Open Settings and choose Reset.
```bash
# not a heading: inside a fence
reset --now
```
## Two-factor
Use an authenticator app.
# Billing **plans**
See [the prices](https://x.example/prices).
"""


def test_sections_follow_headings_but_not_hashes_inside_code_fences() -> None:
    found = sections(PAGE)
    assert [path for path, _ in found] == [[], ["Account", "Password"], ["Account", "Two-factor"], ["Billing plans"]]
    assert "# not a heading: inside a fence" in found[1][1]


def test_small_neighbouring_sections_are_packed_under_their_common_heading() -> None:
    chunks = chunk_markdown(PAGE, "Help")
    account = next(c for c in chunks if c.heading_path == "Account")
    assert "## Password\nOpen Settings" in account.text and "## Two-factor\nUse an authenticator" in account.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_a_long_section_is_split_within_the_budget_with_overlap() -> None:
    sentences = " ".join(f"Sentence number {n} says something about the product." for n in range(200))
    chunks = chunk_markdown(f"# Guide\n{sentences}", max_tokens=100, overlap_tokens=20)
    assert len(chunks) > 5 and all(c.heading_path == "Guide" for c in chunks)
    assert all(len(c.text) <= 100 * CHARS_PER_TOKEN for c in chunks)
    for before, after in zip(chunks, chunks[1:], strict=False):
        first_sentence = after.text.split(". ")[0]
        assert first_sentence in before.text  # each piece repeats the end of the one before


def test_a_word_longer_than_the_budget_is_hard_wrapped() -> None:
    pieces = split_long("x" * 1000, max_chars=300, overlap_chars=0)
    assert all(len(p) <= 300 for p in pieces) and "".join(pieces).replace(" ", "") == "x" * 1000


def test_the_same_page_gives_the_same_chunks_and_a_changed_title_changes_the_hashes() -> None:
    first, again = chunk_markdown(PAGE, "Help"), chunk_markdown(PAGE, "Help")
    assert first == again
    renamed = chunk_markdown(PAGE, "Help centre")
    assert [c.text for c in renamed] == [c.text for c in first]
    assert not {c.content_hash for c in renamed} & {c.content_hash for c in first}


def test_an_empty_page_has_no_chunks_and_token_estimates_round_up() -> None:
    assert chunk_markdown("") == [] and chunk_markdown("# Only a heading\n") == []
    assert estimate_tokens("") == 1 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
