"""Token counts: the one estimator, and exact counts with tiktoken for OpenAI's own models when it can.

The estimate: one token per `chars_per_token` ASCII characters (4 for OpenAI's models, 3.5 for others,
whose tokenizers split finer) plus one token per non-ASCII character (accented letters and CJK often cost
a token each). English prose runs ~4.5 characters per o200k token, so the estimate leans high, which keeps
prompts inside the budget. tiktoken downloads its encoding files on first use; where that fails (no
network, as in this sandbox) counting falls back to the estimate, once, with a log line.
Each provider names its `Counting` in the registry (shared/llm/registry.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

log = logging.getLogger("dialog_engine.tokens")

MESSAGE_OVERHEAD = 4  # role markers and separators per chat message


def estimate(text: str, chars_per_token: float = 4.0) -> int:
    ascii_chars = sum(1 for c in text if c < "\x80") if not text.isascii() else len(text)
    return int(ascii_chars / chars_per_token + 0.999) + (len(text) - ascii_chars)


@dataclass(frozen=True)
class Counting:
    """How one provider's tokens are counted: the estimate at its density, exact through tiktoken if asked."""

    chars_per_token: float = 3.5
    tiktoken: bool = False

    def estimate(self, text: str) -> int:
        return estimate(text, self.chars_per_token)

    def exact(self, model: str) -> Callable[[str], int]:
        """A function text -> tokens for `model`: tiktoken's count when it applies and works, else the estimate."""
        enc = _encoding(encoding_name(model)) if self.tiktoken else None
        if enc is None:
            return self.estimate
        return lambda text: len(enc.encode(text, disallowed_special=()))


OPENAI_MODELS = Counting(chars_per_token=4.0, tiktoken=True)
OTHER_MODELS = Counting(chars_per_token=3.5)


def encoding_name(model: str) -> str:
    # gpt-4o, gpt-4.1, gpt-5 and the o-series use o200k; the older gpt-4 / gpt-3.5 families cl100k.
    return "cl100k_base" if model.startswith(("gpt-4-", "gpt-3.5")) or model == "gpt-4" else "o200k_base"


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception as exc:  # no network for the first download, or tiktoken missing
        log.warning("tiktoken encoding %s unavailable (%s); using the ~4 chars/token estimate",
                    name, type(exc).__name__)
        return None
