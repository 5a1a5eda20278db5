"""How a provider's failure is classified for failover (shared.llm.classify), with the SDKs' own exceptions,
and what clients are told of it (public_reason / public_failover)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from shared.llm import ProviderError, classify, public_failover, public_reason

OPENAI = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
ANTHROPIC = httpx.Request("POST", "https://api.anthropic.com/v1/messages")


def openai_status(status: int, message: str = "failed") -> openai.APIStatusError:
    body = {"error": {"message": message, "type": "server_error"}}
    response = httpx.Response(status, request=OPENAI, json=body)
    error_class = {429: openai.RateLimitError, 401: openai.AuthenticationError,
                   400: openai.BadRequestError}.get(status, openai.APIStatusError)
    return error_class(message, response=response, body=body)


@pytest.mark.parametrize(("status", "retryable"), [
    (429, True), (500, True), (502, True), (503, True), (504, True), (408, True), (409, True),
    (400, False), (401, False), (403, False), (404, False), (422, False)])
def test_an_http_status_decides_whether_the_next_provider_is_tried(status: int, retryable: bool) -> None:
    failure = classify("openai", openai_status(status))
    assert (failure.provider, failure.reason, failure.retryable) == ("openai", f"http_{status}", retryable)


def test_anthropics_overloaded_status_is_retried() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    exc = anthropic.APIStatusError("Overloaded", response=httpx.Response(529, request=ANTHROPIC, json=body), body=body)
    failure = classify("anthropic", exc)
    assert failure.reason == "http_529" and failure.retryable
    assert public_reason(failure.reason) == "overloaded"


@pytest.mark.parametrize(("kind", "retryable"), [
    ("overloaded_error", True), ("api_error", True), ("rate_limit_error", True),
    ("invalid_request_error", False), ("permission_error", False)])
def test_an_error_event_inside_a_started_stream_is_classified_by_its_type(kind: str, retryable: bool) -> None:
    # Anthropic streams answer 200 and may then send `event: error`; the SDK raises it with the 200 response.
    body = {"type": "error", "error": {"type": kind, "message": "x" * 1000}}
    exc = anthropic.APIStatusError("stream error", response=httpx.Response(200, request=ANTHROPIC), body=body)
    failure = classify("anthropic", exc)
    assert (failure.reason, failure.retryable) == (kind, retryable)
    assert len(failure.message) <= 300  # the provider's text is kept short


def test_timeouts_and_unreachable_servers_are_retried() -> None:
    assert classify("openai", openai.APITimeoutError(request=OPENAI)).reason == "timeout"
    assert classify("openai", openai.APIConnectionError(request=OPENAI)).reason == "connection_error"
    assert classify("anthropic", anthropic.APITimeoutError(request=ANTHROPIC)).reason == "timeout"
    assert classify("custom", ConnectionRefusedError("refused")).reason == "connection_error"
    assert classify("custom", TimeoutError("slow")).reason == "timeout"
    assert all(classify("openai", exc).retryable for exc in (
        openai.APITimeoutError(request=OPENAI), openai.APIConnectionError(request=OPENAI), TimeoutError()))


def test_an_unexpected_exception_is_recorded_as_ours_and_the_next_provider_gets_a_chance() -> None:
    failure = classify("openai", KeyError("choices"))
    assert failure.reason == "client_error" and failure.retryable and "KeyError" in failure.message
    assert public_reason(failure.reason) == "internal_error"


def test_a_provider_error_passes_through_unchanged() -> None:
    given = ProviderError("openai", "first_token_timeout", "no first token", retryable=True)
    assert classify("anthropic", given) is given


@pytest.mark.parametrize(("reason", "public"), [
    ("http_429", "rate_limited"), ("rate_limit_error", "rate_limited"), ("http_529", "overloaded"),
    ("timeout", "timeout"), ("first_token_timeout", "timeout"), ("connection_error", "unreachable"),
    ("http_401", "auth_error"), ("permission_error", "auth_error"), ("http_502", "server_error"),
    ("http_418", "request_rejected"), ("invalid_request_error", "server_error"), ("something_new", "internal_error")])
def test_clients_see_a_coarse_reason_only(reason: str, public: str) -> None:
    assert public_reason(reason) == public


def test_public_failover_keeps_the_provider_and_drops_the_providers_own_text() -> None:
    stored = [{"provider": "openai", "reason": "http_503", "message": "upstream 10.0.3.7 said sk-...abcd"}]
    assert public_failover(stored) == [{"provider": "openai", "reason": "server_error"}]
    assert public_failover(None) == [] and public_failover([]) == []
