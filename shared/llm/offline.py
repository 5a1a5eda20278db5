"""The offline answerer: with no model key it quotes the best retrieved passages, cited [n], and says so."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from shared.llm import Chunk, LLMRequest, tokens
from shared.llm.registry import ProviderSpec

MAX_PASSAGES = 3
MAX_QUOTE_CHARS = 320
STOP_WORDS = ("a an and are as at be by can do does for from how i in is it me my of on or our the this to was we "
              "what when where which who why will with you your der die das und ist ein eine wie wer wo ich")
STOP = frozenset(STOP_WORDS.split())


class OfflineProvider:
    def __init__(self, spec: ProviderSpec) -> None:
        self.name = spec.name

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        from shared.i18n.phrases import phrase  # the fixed sentences, not the prompt builder

        if not request.passages:
            parts = [phrase("offline_empty", request.language)]
        else:
            parts = [phrase("offline_intro", request.language)]
            for p in request.passages[:MAX_PASSAGES]:
                parts.append(f"\n\n> {best_quote(p['text'], request.question)} [{p['index']}]")
        for part in parts:
            yield Chunk(text=part)
            await asyncio.sleep(0)  # let a disconnect or cancellation in between parts
        text = "".join(parts)
        yield Chunk(usage={"input_tokens": 0, "output_tokens": tokens.estimate(text)})


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if w not in STOP and len(w) > 1}


def best_quote(text: str, question: str) -> str:
    """The passage's sentences that share words with the question (best first, within the length limit),
    shown in their original order; the first sentence when none does."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    if not sentences:
        return ""
    wanted = words(question)
    overlap = [len(words(s) & wanted) for s in sentences]
    ranked = sorted((i for i in range(len(sentences)) if overlap[i]), key=lambda i: (-overlap[i], i)) or [0]
    chosen: list[int] = []
    length = 0
    for i in ranked:
        if chosen and length + len(sentences[i]) > MAX_QUOTE_CHARS:
            break
        chosen.append(i)
        length += len(sentences[i]) + 1
    quote = " ".join(" ".join(sentences[i] for i in sorted(chosen)).split())
    if len(quote) > MAX_QUOTE_CHARS:
        quote = quote[: MAX_QUOTE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return quote

