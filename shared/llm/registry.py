"""Every model provider, declared once. Everything else reads this table: which providers a template may
name (template_config), whether one is configured and which variable to set when it is not (the turn's
error, the health report), its default model, how its tokens are counted (prompting), which settings are
secrets (log scrubbing) and the docs.

Adding a provider: its module (a class made with its spec, with `stream(request)`; see
shared/llm/__init__.Provider), its stand-in in tests/fakes/, its settings, and one line here. Another
endpoint speaking a protocol we have (OpenAI's, Anthropic's) needs no module: one line and its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.llm.tokens import OPENAI_MODELS, OTHER_MODELS, Counting

if TYPE_CHECKING:
    from shared.llm import ProviderError


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    provider: str                      # "module:Class", made with this spec; imported on first use
    label: str                         # what the docs and the health report call it
    api_key: str | None = None         # the setting holding its key (a secret: scrubbed from logs and errors)
    base_url: str | None = None        # the setting pointing it at another endpoint
    needs: tuple[str, ...] = ()        # settings of which one set configures it (none: always available)
    secrets: tuple[str, ...] = ()      # other settings holding its secrets
    default_model: str = ""            # the model when it answers for a template that names another provider
    model_setting: str | None = None   # ... or this setting's value, when set
    tokens: Counting = OTHER_MODELS
    partner: bool = False              # joins a template's default failover order when configured
    # An exception of its call as a ProviderError (retryable or not); None: shared.llm.classify, which
    # passes ProviderErrors through and knows the openai and anthropic SDKs' exceptions.
    classify: Callable[[str, Exception], ProviderError] | None = None

    @property
    def secret_settings(self) -> tuple[str, ...]:
        return (*((self.api_key,) if self.api_key else ()), *self.secrets)

    @property
    def settings(self) -> tuple[str, ...]:
        named = (*self.needs, self.api_key, self.base_url, *self.secrets, self.model_setting)
        return tuple(dict.fromkeys(name for name in named if name))

    def variables(self) -> str:
        """What to set to configure it, as an operator writes it: "OPENAI_API_KEY or OPENAI_BASE_URL"."""
        return " or ".join(name.upper() for name in self.needs)


PROVIDERS: dict[str, ProviderSpec] = {spec.name: spec for spec in (
    ProviderSpec("openai", "shared.llm.openai_provider:OpenAIProvider", "OpenAI chat completions",
                 api_key="openai_api_key", base_url="openai_base_url", needs=("openai_api_key", "openai_base_url"),
                 default_model="gpt-4o-mini", tokens=OPENAI_MODELS, partner=True),
    ProviderSpec("anthropic", "shared.llm.anthropic_provider:AnthropicProvider", "Anthropic messages",
                 api_key="anthropic_api_key", base_url="anthropic_base_url", needs=("anthropic_api_key",),
                 default_model="claude-haiku-4-5", partner=True),
    ProviderSpec("offline", "shared.llm.offline:OfflineProvider", "the offline answerer (quotes passages)",
                 default_model="extractive"),
    ProviderSpec("openai_compatible", "shared.llm.openai_provider:OpenAIProvider", "an OpenAI-compatible server "
                 "with its own name (Groq, Together, vLLM, Ollama)", api_key="openai_compatible_api_key",
                 base_url="openai_compatible_base_url", needs=("openai_compatible_base_url",),
                 model_setting="openai_compatible_model"),
)}


def spec(name: str) -> ProviderSpec:
    """The provider named `name`; LookupError for a name nobody registered."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise LookupError(f"no model provider named {name!r} (known: {', '.join(PROVIDERS)})") from None


def is_configured(name: str, settings: Any) -> bool:
    needs = spec(name).needs
    return not needs or any(getattr(settings, setting, None) for setting in needs)


def model_providers() -> list[str]:
    """The providers that call a model (all but those that need nothing, like the offline answerer)."""
    return [name for name, s in PROVIDERS.items() if s.needs]


def secret_settings() -> set[str]:
    return {setting for s in PROVIDERS.values() for setting in s.secret_settings}
