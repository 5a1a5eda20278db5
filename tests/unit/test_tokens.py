"""The one token estimator and each provider's way of counting (shared.llm.tokens)."""

from __future__ import annotations

from shared.llm.registry import PROVIDERS
from shared.llm.tokens import OPENAI_MODELS, OTHER_MODELS, Counting, encoding_name, estimate


def test_ascii_text_costs_one_token_per_four_characters_rounded_up() -> None:
    assert estimate("") == 0
    assert estimate("abcd") == 1 and estimate("abcde") == 2
    assert estimate("a" * 400) == 100


def test_each_non_ascii_character_costs_a_token_of_its_own() -> None:
    assert estimate("Grüße") == 1 + 2          # "Gre" -> 1, "ü" and "ß" -> 1 each
    assert estimate("日本語のテキスト") == 8
    assert estimate("é" * 10, chars_per_token=3.5) == 10


def test_other_models_are_estimated_denser_than_openais() -> None:
    text = "A sentence of plain English prose, long enough to tell the two densities apart."
    assert OTHER_MODELS.estimate(text) > OPENAI_MODELS.estimate(text) == estimate(text, 4.0)


def test_a_provider_without_tiktoken_counts_with_the_estimate() -> None:
    counter = Counting(chars_per_token=3.5, tiktoken=False).exact("claude-haiku-4-5")
    assert counter("abcdefg") == 2


def test_the_registry_names_how_each_provider_counts() -> None:
    assert PROVIDERS["openai"].tokens is OPENAI_MODELS
    assert PROVIDERS["anthropic"].tokens is OTHER_MODELS


def test_openai_models_map_to_their_tiktoken_encoding() -> None:
    assert encoding_name("gpt-4o-mini") == "o200k_base" and encoding_name("gpt-5") == "o200k_base"
    assert encoding_name("gpt-4") == "cl100k_base" and encoding_name("gpt-4-turbo") == "cl100k_base"
    assert encoding_name("gpt-3.5-turbo") == "cl100k_base"
