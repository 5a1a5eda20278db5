"""Which URLs a crawl may follow (shared.knowledge.crawl.scope): host, base path, skipped file types, and
include/exclude
patterns on a linear-time matcher (RE2)."""

from __future__ import annotations

import pytest

from shared.knowledge.crawl.scope import MAX_PATTERNS, Scope, compile_patterns

EVIL = r"^/(a+)+$"
ADVERSARIAL = "/" + "a" * 40 + "b"  # backtracking tries every split of the a's: about 2^40 steps


@pytest.mark.timeout(10)  # Python's re never returns on this
def test_a_backtracking_pattern_answers_at_once_on_an_adversarial_path() -> None:
    scope = Scope("https://acme.test/", include=[], exclude=[EVIL])
    assert scope.allows(f"https://acme.test{ADVERSARIAL}")   # not excluded: the pattern does not match
    assert not scope.allows("https://acme.test/aaaa")         # excluded: it does
    only = Scope("https://acme.test/", include=[EVIL, r"(x+x+)+y"])
    assert not only.matches(f"https://acme.test{ADVERSARIAL}?{'x' * 40}")
    assert only.matches("https://acme.test/aa")


def test_a_crawl_stays_on_its_host_and_under_its_start_path() -> None:
    scope = Scope("https://Docs.Example/guide/index.html")
    assert scope.allows("https://docs.example/guide/") and scope.allows("https://docs.example/guide/setup")
    assert scope.allows("https://docs.example/guide")
    assert not scope.allows("https://docs.example/guidelines")    # a sibling that only starts alike
    assert not scope.allows("https://docs.example/blog/post")
    assert not scope.allows("https://other.example/guide/setup")
    assert not scope.allows("ftp://docs.example/guide/file")


def test_files_that_are_not_pages_are_skipped() -> None:
    scope = Scope("https://docs.example/")
    assert not scope.allows("https://docs.example/logo.PNG") and not scope.allows("https://docs.example/app.js")
    assert scope.allows("https://docs.example/manual.pdf") and scope.allows("https://docs.example/v1.2/intro")


def test_include_and_exclude_patterns_see_the_path_and_query() -> None:
    scope = Scope("https://docs.example/", include=[r"^/docs/"], exclude=[r"[?&]print=1"])
    assert scope.allows("https://docs.example/docs/a") and not scope.allows("https://docs.example/blog/a")
    assert not scope.allows("https://docs.example/docs/a?print=1")


def test_patterns_re2_refuses_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"include_paths: '\(\?=x\)' is not a regular expression RE2 accepts"):
        compile_patterns(["(?=x)"], "include_paths")
    with pytest.raises(ValueError, match="exclude_paths: at most"):
        compile_patterns(["a"] * (MAX_PATTERNS + 1), "exclude_paths")
    with pytest.raises(ValueError, match="exclude_paths: patterns must be 1 to"):
        compile_patterns([""], "exclude_paths")
