"""Answer support: how much of an answer its passages back. An LLM judge when EVAL_JUDGE names a configured
provider and model ("openai:gpt-4o-mini"); otherwise (or when the judge fails) lexical overlap, offline.
Every score says which of the two produced it, and a run's metric names its method."""

from __future__ import annotations

import logging
import re
from typing import Any

from shared.core.settings import get_settings
from shared.evals.scoring import MARK, normalise

log = logging.getLogger("dialog_engine.evals")
STOP_WORDS = ("a an and are as at be by can do does for from has have how i if in is it its me my no not of on or our "
              "so that the their there these this to was we what when where which who why will with you your der die "
              "das und ist ein eine nicht mit von zu")
STOP = frozenset(STOP_WORDS.split())
JUDGE_PROMPT = ("You grade whether an answer is supported by the numbered passages it was given. Reply with one "
                "number between 0 and 1: the share of the answer's claims the passages support (1 = all of them). "
                "Reply with the number only.")
JUDGE_MAX_PASSAGE_CHARS = 2000


def lexical_support(answer: str, passages: list[str]) -> float | None:
    """Share of the answer's content words (citation marks and stop words aside) found in the passages.
    None for an answer without content words (nothing to support)."""
    words = [w for w in normalise(MARK.sub(" ", answer)).split() if w not in STOP and len(w) > 1]
    if not words:
        return None
    known = set(normalise(" ".join(passages)).split())
    return round(sum(1 for w in words if w in known) / len(words), 4)


def method() -> str:
    """'judge:<provider>/<model>' when a judge is configured, else 'lexical'."""
    judge = _judge()
    return f"judge:{judge[0]}/{judge[1]}" if judge else "lexical"


def _judge() -> tuple[str, str] | None:
    from shared import llm

    value = (get_settings().eval_judge or "").strip()
    provider, _, model = value.partition(":")
    if not provider or provider == "offline" or not llm.configured(provider):
        return None
    return provider, model or llm.default_model(provider)


async def support(question: str, answer: str, passages: list[str]) -> tuple[float | None, str]:
    """(score 0..1 or None, the method that produced it)."""
    judge = _judge()
    if judge is None or not answer.strip():
        return lexical_support(answer, passages), "lexical"
    try:
        return await _ask_judge(judge, question, answer, passages), f"judge:{judge[0]}/{judge[1]}"
    except Exception as exc:  # a judge outage must not fail the run: the offline score stands in, marked so
        log.warning("the answer judge failed, lexical score used: %s", type(exc).__name__)
        return lexical_support(answer, passages), "lexical (judge failed)"


async def _ask_judge(judge: tuple[str, str], question: str, answer: str, passages: list[str]) -> float:
    from shared import llm

    context = "\n\n".join(f"[{i}] {p[:JUDGE_MAX_PASSAGE_CHARS]}" for i, p in enumerate(passages, 1))
    request = llm.LLMRequest(model=judge[1], system=JUDGE_PROMPT, temperature=0.0, max_output_tokens=10,
                             messages=[{"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"
                                                                   f"\n\nAnswer: {answer}"}])
    text = await llm.complete_text([judge], request)
    found = re.search(r"\d+(?:\.\d+)?", text)
    if found is None or not 0 <= float(found.group()) <= 1:
        raise ValueError("the judge did not reply with a number between 0 and 1")
    return round(float(found.group()), 4)


def passage_texts(passages: list[dict[str, Any]]) -> list[str]:
    return [f"{p.get('title') or ''} {p.get('heading_path') or ''} {p.get('text') or ''}" for p in passages]
