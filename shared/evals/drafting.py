"""Draft cases from an assistant's indexed pages: a question per section, with its page as the expected
source, plus off-topic questions that must abstain. Drafts are not run until an admin accepts them.

Offline, a section's heading becomes the question ("Invoices" -> "What should I know about invoices?"; a
heading that already asks stays as it is). With a model configured for the assistant, the model writes the
question from the section's text instead (falling back to the heading when it fails). The expected source is
the page's URL rather than the chunk: chunk ids change with every edit of the page, URLs survive re-syncs.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import psycopg

from shared.core.db import Row, fetch_all
from shared.evals.sets import CaseIn, ExpectedSource, add_cases, get_set

log = logging.getLogger("dialog_engine.evals")
QUESTION_WORDS = ("how", "what", "why", "when", "where", "who", "which", "can", "do", "does", "is", "are", "should",
                  "wie", "was", "warum", "wann", "wo", "wer", "kann", "muss", "ist")
OFFTOPIC = {
    "en": ["What is the best recipe for a sourdough bread starter?", "Who won the football world cup in 1974?",
           "How do I change the oil filter on a diesel tractor?", "What is the capital of Mongolia?",
           "Which planet has the most moons?", "How long should I boil an egg for a soft yolk?"],
    "de": ["Wie backe ich ein Sauerteigbrot?", "Wer wurde 1974 Fußballweltmeister?",
           "Wie wechsle ich den Ölfilter eines Traktors?", "Was ist die Hauptstadt der Mongolei?",
           "Welcher Planet hat die meisten Monde?", "Wie lange kocht ein weiches Ei?"],
}
ASK = {"en": "What should I know about {}?", "de": "Was muss ich über {} wissen?"}
MODEL_PROMPT = ("Write one question a customer might ask that the passage below answers, in the passage's "
                "language. Reply with the question only.")
SECTIONS = """
    SELECT DISTINCT ON (c.document_id) c.id, c.document_id, c.url, c.title, c.heading_path, c.text,
           c.language::text AS language
    FROM chunks c
    WHERE c.workspace_id = %s AND c.assistant_id = %s AND c.url IS NOT NULL AND length(c.text) > 40
    ORDER BY c.document_id, (c.heading_path = ''), c.ordinal"""


def heading_question(heading_path: str, title: str | None, language: str = "en") -> str | None:
    """The section's heading (else the page title) as a question; None when there is neither."""
    heading = (heading_path.split(" > ")[-1] if heading_path else "") or (title or "")
    heading = re.sub(r"\s+", " ", heading).strip(" #:.-")
    if not heading:
        return None
    if heading.endswith("?"):
        return heading
    first = heading.split(" ", 1)[0].lower()
    if first in QUESTION_WORDS:
        return heading + "?"
    subject = heading if heading[:2].isupper() or language == "de" else heading[0].lower() + heading[1:]
    return ASK.get(language, ASK["en"]).format(subject)


def _language(regconfig: str | None) -> str:
    return "de" if (regconfig or "").startswith("german") else "en"


def draft(conn: psycopg.Connection[Row], workspace_id: str, set_id: str, count: int, offtopic: int) -> list[Row]:
    """Up to `count` section cases (pages not yet expected by a case of the set) and `offtopic` abstain cases."""
    eval_set = get_set(conn, workspace_id, set_id)
    existing = fetch_all(conn, "SELECT question, expected_sources FROM eval_cases WHERE set_id = %s", (set_id,))
    asked = {r["question"].strip().lower() for r in existing}
    covered = {s.get("url") for r in existing for s in r["expected_sources"]}
    sections = [s for s in fetch_all(conn, SECTIONS, (workspace_id, eval_set["assistant_id"]))
                if s["url"] not in covered]
    sections.sort(key=lambda s: s["url"])
    writer = _model_writer(conn, workspace_id, eval_set["assistant_id"])
    cases: list[CaseIn] = []
    for section in sections:
        if len(cases) >= count:
            break
        language = _language(section["language"])
        question = (writer(section["text"]) if writer else None) or heading_question(
            section["heading_path"], section["title"], language)
        if not question or question.strip().lower() in asked:
            continue
        asked.add(question.strip().lower())
        cases.append(CaseIn(question=question[:8000], expected_sources=[ExpectedSource(url=section["url"])],
                            tags=["drafted", f"lang:{language}"], status="draft"))
    language = _language(sections[0]["language"]) if sections else "en"
    for question in [q for q in OFFTOPIC[language] if q.lower() not in asked][:offtopic]:
        cases.append(CaseIn(question=question, expect_abstain=True, tags=["drafted", "off-topic"], status="draft"))
    with conn.transaction():
        return add_cases(conn, workspace_id, set_id, cases, origin="drafted")


def _model_writer(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str) -> Any:
    """A function passage -> question using the assistant's model, or None offline."""
    from shared import llm
    from shared.workspace.assistants import load_assistant

    config = load_assistant(conn, workspace_id, assistant_id).config
    try:
        order = llm.provider_order(config.provider, config.model, config.providers)
    except Exception:
        return None
    if order[0][0] == "offline":
        return None

    def write(text: str) -> str | None:
        request = llm.LLMRequest(model=order[0][1], system=MODEL_PROMPT, temperature=0.3, max_output_tokens=80,
                                 messages=[{"role": "user", "content": text[:3000]}])
        try:
            answer = asyncio.run(_text(order, request)).strip().strip('"')
        except Exception as exc:  # the heading still makes a question
            log.warning("drafting a question with the model failed: %s", type(exc).__name__)
            return None
        return answer if 5 < len(answer) < 500 else None

    return write


async def _text(order: list[tuple[str, str]], request: Any) -> str:
    from shared import llm

    return await llm.complete_text(order, request)
