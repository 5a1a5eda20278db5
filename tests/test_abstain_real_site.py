"""Abstaining on evidence, on a real documentation site (the Flask manual from tests/corpora, crawled as a
`site` source): off-topic questions get the fallback without a model call, questions the manual answers
reach the model. The threshold reads the best passage's normalised BM25 (or cosine similarity), which is
absolute; the fused score is relative, so an off-topic question's best passage scored 1.0 and never abstained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests import corpora
from tests.fakes.chat_fixtures import chat, make_assistant, text_of
from tests.fakes.crawl_fixtures import add_source, wait_synced

QUESTIONS = Path(__file__).resolve().parent.parent / "bench" / "corpora" / "flask"
FALLBACK = "That is not in our documentation."


def questions(file: str) -> list[str]:
    return [json.loads(line)["question"] for line in (QUESTIONS / file).read_text().splitlines() if line.strip()]


def test_off_topic_questions_abstain_and_on_topic_ones_reach_the_model(engine: Any, openai_api: Any) -> None:
    workspace_id, key = engine.workspace()
    with engine.db() as conn:
        assistant_id = make_assistant(conn, workspace_id, abstain_threshold=0.5, fallback_message=FALLBACK)
    client = engine.client(key)
    with corpora.serve("flask") as base:
        source = wait_synced(engine, client, add_source(client, assistant_id, kind="site",
                                                        url=f"{base}/{corpora.START_PAGE}")["id"], timeout=180)
    assert source["status"] == "ready" and source["chunks_count"] > 100

    off_topic = questions("offtopic.jsonl")
    for question in off_topic:
        assert text_of(chat(client, assistant_id=assistant_id, message=question)) == FALLBACK, question
    assert openai_api.requests == []

    on_topic = questions("questions.jsonl")[:10]
    openai_api.reply = "See the manual [1]."
    abstained = [q for q in on_topic if text_of(chat(client, assistant_id=assistant_id, message=q)) == FALLBACK]
    assert abstained == [] and len(openai_api.requests) == len(on_topic)
