"""One resolver for the limits an assistant or a workspace overrides (shared.guard.overrides)."""

from __future__ import annotations

from shared.guard.overrides import resolve


def test_the_assistant_wins_over_the_workspace_and_both_over_the_default() -> None:
    assert resolve("daily_tokens", 1000, {"daily_tokens": 50}, {"daily_tokens": 70}) == 50
    assert resolve("daily_tokens", 1000, {}, {"daily_tokens": 70}) == 70
    assert resolve("daily_tokens", 1000, None, None) == 1000
    assert resolve("daily_tokens", 1000) == 1000


def test_zero_is_a_limit_not_a_missing_value() -> None:
    assert resolve("messages_per_minute", 30, {"messages_per_minute": 0}, {"messages_per_minute": 9}) == 0


def test_values_that_are_not_a_non_negative_integer_are_skipped() -> None:
    for bad in (-1, True, False, 2.5, "10", None, [5]):
        assert resolve("rpm", 30, {"rpm": bad}, {"rpm": 12}) == 12, bad
        assert resolve("rpm", 30, {"rpm": bad}) == 30, bad


def test_other_names_in_an_override_do_not_leak_in() -> None:
    assert resolve("rpm", 30, {"daily_tokens": 5}) == 30
