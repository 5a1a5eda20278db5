"""With no model key the engine still answers: it quotes the best passages with citations and says why."""

from __future__ import annotations

from typing import Any

from tests.fakes.chat_fixtures import chat, last, make_assistant, messages, text_of
from tests.fakes.fixtures import add_page


def test_offline_answerer_quotes_and_cites(engine: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
        chunks = add_page(conn, workspace, assistant, "Returns", [
            ("Refunds", ("We are a friendly shop. Refunds are paid back within 14 days of the return. "
                         "Opening hours are nine to five.")),
            ("Shipping", "Parcels ship within two working days.")])
    events = chat(engine.client(key), assistant_id=assistant, message="How long until refunds are paid?")
    text, done, sources = text_of(events), last(events, "done"), last(events, "sources")
    assert text.startswith("No language model is configured")
    assert "> Refunds are paid back within 14 days of the return. [1]" in text
    assert sources[0]["index"] == 1 and sources[0]["chunk_id"] == chunks[0]["id"]
    assert sources[0]["url"] == "https://docs.example.com/returns" and "14 days" in sources[0]["quote"]
    assert done["provider"] == "offline" and done["model"] == "extractive" and done["status"] == "complete"
    with engine.db() as conn:
        stored = messages(conn, events[0][1]["conversation_id"])[-1]
    assert stored["content"] == text and stored["citations"] == sources


def test_offline_without_knowledge_says_so(engine: Any) -> None:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    events = chat(engine.client(key), assistant_id=assistant, message="Anything?")
    assert text_of(events) == ("I don't have any knowledge to answer from yet, and no language model is "
                               "configured.")
    assert last(events, "sources") == [] and last(events, "done")["status"] == "complete"
