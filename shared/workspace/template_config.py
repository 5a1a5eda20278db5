"""What a template version holds: prompt, model, retrieval settings, language, abstain rule, greeting."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from shared.core.errors import Unprocessable
from shared.llm.registry import PROVIDERS


def _known_provider(name: str) -> str:
    if name not in PROVIDERS:
        raise ValueError(f"Input should be one of {', '.join(map(repr, PROVIDERS))}")
    return name


# A name from the provider registry (shared/llm/registry.py); whether it is configured is the turn's question.
Provider = Annotated[str, AfterValidator(_known_provider),
                     WithJsonSchema({"type": "string", "enum": list(PROVIDERS)})]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant for this organisation. Answer from the numbered context passages, "
    "cite them as [n], and say plainly when the context does not contain the answer."
)


class RetrievalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=5, ge=1, le=50)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    mode: Literal["keyword", "vector", "hybrid"] = "hybrid"


class TemplateConfig(BaseModel):
    """One template version. Unknown fields are refused so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(default=DEFAULT_SYSTEM_PROMPT, min_length=1, max_length=20_000)
    provider: Provider = "openai"
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    # Failover order; None = the template's provider, then the configured partners (registry `partner`).
    providers: list[Provider] | None = None
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_output_tokens: int = Field(default=800, ge=1, le=32_000)
    context_window_tokens: int = Field(default=16_000, ge=1_000, le=2_000_000)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    # 'auto': answer in the language of the user's message; an ISO 639-1 code ("en", "de") pins one.
    language: str = Field(default="auto", min_length=2, max_length=10)
    abstain_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    fallback_message: str | None = Field(default=None, max_length=2000)
    greeting: str = Field(default="", max_length=2000)
    suggested_questions: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=10)
    pii_redaction: bool = False


DEFAULT_TEMPLATE = TemplateConfig(description="The built-in template every workspace starts from.")


def validate_config(data: dict[str, Any], field_prefix: str = "") -> TemplateConfig:
    """A TemplateConfig from plain data, or Unprocessable whose message and details name each bad field.

    `field_prefix` ("overrides") makes the names match where the caller sent them.
    """
    try:
        return TemplateConfig.model_validate(data)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in (field_prefix, *e["loc"]) if p != ""),
                    "problem": e["msg"], "type": e["type"]} for e in exc.errors()]
        fields = ", ".join(d["field"] for d in details[:5])
        raise Unprocessable(f"Invalid template configuration: check {fields}.", details=details) from None
