"""Which providers a turn tries, in which order, with which model (shared.llm.provider_order), from the
settings a deployment sets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.llm import ProviderNotConfigured, provider_order


def test_with_no_model_provider_the_offline_answerer_answers(environment: Callable[..., None]) -> None:
    assert provider_order("openai", "gpt-4o") == [("offline", "extractive")]
    assert provider_order("anthropic", "claude-x", ["anthropic", "openai"]) == [("offline", "extractive")]


def test_the_templates_provider_goes_first_and_configured_partners_follow(environment: Callable[..., None]) -> None:
    environment(OPENAI_API_KEY="sk-test", ANTHROPIC_API_KEY="sk-ant-test")
    assert provider_order("anthropic", "claude-x") == [("anthropic", "claude-x"), ("openai", "gpt-4o-mini")]
    assert provider_order("openai", "gpt-4o") == [("openai", "gpt-4o"), ("anthropic", "claude-haiku-4-5")]


def test_a_partner_that_is_not_configured_does_not_join(environment: Callable[..., None]) -> None:
    environment(OPENAI_API_KEY="sk-test")
    assert provider_order("openai", "gpt-4o") == [("openai", "gpt-4o")]


def test_an_explicit_list_is_the_whole_order_and_others_get_their_default_model(
        environment: Callable[..., None]) -> None:
    environment(OPENAI_API_KEY="sk-test", ANTHROPIC_API_KEY="sk-ant-test", OPENAI_COMPATIBLE_BASE_URL="http://llm:8000/v1",
                OPENAI_COMPATIBLE_MODEL="llama-3-8b")
    assert provider_order("openai", "gpt-4o", ["openai_compatible", "openai", "openai_compatible"]) == [
        ("openai_compatible", "llama-3-8b"), ("openai", "gpt-4o")]
    # openai_compatible is not a partner: it answers only where a template names it.
    assert ("openai_compatible", "llama-3-8b") not in provider_order("openai", "gpt-4o")


def test_a_named_provider_that_is_not_configured_names_the_variable_to_set(environment: Callable[..., None]) -> None:
    environment(OPENAI_API_KEY="sk-test")
    with pytest.raises(ProviderNotConfigured) as refused:
        provider_order("anthropic", "claude-x")
    assert "ANTHROPIC_API_KEY" in refused.value.message
    assert refused.value.details == {"providers": ["anthropic"], "settings": [["ANTHROPIC_API_KEY"]]}
    with pytest.raises(ProviderNotConfigured) as unknown:
        provider_order("openai", "gpt-4o", ["openai", "mystery"])
    assert "mystery" in unknown.value.message


def test_a_base_url_alone_configures_openai(environment: Callable[..., None]) -> None:
    environment(OPENAI_BASE_URL="http://localhost:11434/v1")
    assert provider_order("openai", "llama3") == [("openai", "llama3")]
