"""The provider registry: a template naming an unconfigured provider is refused with the variable to set,
health names what each provider needs, and everything that lists providers agrees with the registry."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from shared.llm.registry import PROVIDERS, model_providers
from tests.conftest import ROOT
from tests.fakes.chat_fixtures import chat, last, make_assistant, text_of


@pytest.mark.parametrize("overrides", [{"provider": "anthropic", "model": "claude-sonnet-4-5"},
                                       {"providers": ["anthropic"]}])
def test_a_template_naming_an_unconfigured_provider_is_refused_naming_the_variable(
        engine: Any, openai_api: Any, overrides: dict[str, Any]) -> None:
    # OpenAI is configured, Anthropic is not: before, the first answered with OpenAI's default model and the
    # second with the offline answerer, both as if nothing were wrong.
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, **overrides)
    for stream in (True, False):
        body = {"assistant_id": assistant, "message": "Hi", "stream": stream}
        reply = engine.client(key).post("/api/chat", json=body)
        assert reply.status_code == 503, reply.text
        error = reply.json()["error"]
        assert error["code"] == "provider_not_configured"
        assert "anthropic: set ANTHROPIC_API_KEY" in error["message"]
        assert error["details"] == {"providers": ["anthropic"], "settings": [["ANTHROPIC_API_KEY"]]}
    assert openai_api.requests == []
    with engine.db() as conn:  # refused before anything was stored
        assert conn.execute("SELECT count(*) AS n FROM messages WHERE workspace_id = %s",
                            (workspace,)).fetchone()["n"] == 0


def test_with_no_model_configured_at_all_every_template_answers_offline(engine: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, providers=["anthropic", "openai"])
    events = chat(engine.client(key), assistant_id=assistant, message="Anything?")
    assert last(events, "done")["provider"] == "offline" and "no language model is configured" in text_of(events)


def test_health_names_the_variable_each_unconfigured_provider_needs(engine: Any, openai_api: Any) -> None:
    _, admin = engine.workspace()
    detail = engine.client(admin).get("/api/health").json()["checks"]["llm"]["detail"]
    missing = ", ".join(f"{n} ({PROVIDERS[n].variables()})" for n in model_providers() if n != "openai")
    assert detail == f"configured: openai; not configured: {missing}"
    assert "anthropic (ANTHROPIC_API_KEY)" in detail


def test_templates_accept_exactly_the_registered_providers() -> None:
    from shared.core.errors import Unprocessable
    from shared.workspace.template_config import TemplateConfig, validate_config

    for name in PROVIDERS:
        assert validate_config({"provider": name, "providers": [name]}).provider == name
    with pytest.raises(Unprocessable) as refused:
        validate_config({"providers": ["openai", "gemini"]})
    assert refused.value.details[0]["field"] == "providers.1" and "'anthropic'" in refused.value.details[0]["problem"]
    schema = TemplateConfig.model_json_schema()["properties"]["provider"]
    assert schema["enum"] == list(PROVIDERS)


def test_every_provider_setting_is_a_documented_setting() -> None:
    from shared.core.settings import Settings

    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for spec in PROVIDERS.values():
        for setting in spec.settings:
            assert setting in Settings.model_fields, f"{spec.name}: {setting} is not in shared/core/settings.py"
            assert re.search(rf"^{setting.upper()}=", example, re.M), f"{setting.upper()} is not in .env.example"
        assert f"`{spec.name}`" in readme, f"README does not describe the provider {spec.name}"


def test_every_provider_secret_is_scrubbed_from_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.core import observability
    from tests.conftest import clear_caches

    secrets = {setting for spec in PROVIDERS.values() for setting in spec.secret_settings}
    assert secrets and secrets <= set(observability.secret_settings())
    for number, setting in enumerate(sorted(secrets)):
        monkeypatch.setenv(setting.upper(), f"plainvalue{number}matchesnopattern")
    clear_caches()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling with %s",
                               (" ".join(f"plainvalue{n}matchesnopattern" for n in range(len(secrets))),), None)
    assert "plainvalue" not in observability.scrub(record.getMessage())


def test_a_summary_for_a_template_whose_provider_is_missing_is_kept_without_a_model(
        engine: Any, openai_api: Any) -> None:
    from functions.summarize_conversation import DIGEST_TITLE, summarise
    from shared.workspace.template_config import validate_config

    config = validate_config({"provider": "anthropic", "model": "claude-sonnet-4-5"})
    older = [{"role": "user", "content": "My order 1234 never arrived. Can you help?"},
             {"role": "assistant", "content": "Sorry to hear that. I have asked the warehouse."}]
    summary = summarise(config, None, older)
    # The job succeeds with the extractive digest (no retry loop on a misconfiguration), and the
    # provider the template did not name is not asked in its place.
    assert summary.startswith(DIGEST_TITLE) and "order 1234" in summary
    assert openai_api.requests == []
