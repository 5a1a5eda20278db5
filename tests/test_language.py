"""Language: pages are stemmed in their own language (detected when a source names none), and the built-in
template answers in the user's language, the offline answerer's fixed sentences included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from shared.i18n.phrases import phrase
from tests.fakes.chat_fixtures import chat, last, make_assistant, text_of
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced
from tests.fakes.fixtures import add_page
from tests.fakes.site_server import html

MIGRATION = Path(__file__).resolve().parent.parent / "shared" / "ops" / "migrations" / "0008_page_languages.sql"

WOHNEN = ("<h2>Unser Haus</h2><p>Die Genossenschaft Sonnenhof besitzt ein Haus mit zwölf Wohnungen am Rand der "
          "Altstadt. Jede Wohnung hat einen eigenen Kellerraum und einen Balkon zur Gartenseite.</p>"
          "<h2>Bewerbung</h2><p>Wer eine Wohnung mieten möchte, schickt uns das ausgefüllte Formular per Post oder "
          "bringt es zu unseren Sprechzeiten vorbei. Die Warteliste wird einmal im Jahr aktualisiert.</p>")
STORAGE = ("<h2>Storage rooms</h2><p>Every apartment comes with its own storage room in the basement. Bicycles "
           "are parked in the shared shed behind the building, which is locked at night.</p>")
GERMAN_TEXT = ("Die Genossenschaft besitzt ein Haus mit zwölf Wohnungen am Rand der Altstadt. Jede Wohnung hat "
               "einen eigenen Kellerraum und einen Balkon zur Gartenseite.")
ENGLISH_TEXT = "The co-operative owns one house with twelve flats. Every flat has its own storage room and a balcony."


def search(engine: Any, client: Any, assistant_id: str, query: str) -> list[dict[str, Any]]:
    reply = client.post("/api/search", json={"assistant_id": assistant_id, "query": query, "mode": "keyword"})
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


def chunk_languages(engine: Any, source_id: str) -> dict[str, str]:
    with engine.db() as conn:
        rows = conn.execute("SELECT url, language::text AS language FROM chunks WHERE source_id = %s",
                            (source_id,)).fetchall()
    return {r["url"].rsplit("/", 1)[-1]: r["language"] for r in rows}


def test_a_german_page_without_a_language_gets_german_stemming(engine, site) -> None:
    site.pages = {"/": ("text/html", html("Wohnen im Sonnenhof", WOHNEN, ["/storage"])),
                  "/storage": ("text/html", html("Storage", STORAGE))}
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="site", url=f"{site.url}/")["id"])
    assert source["status"] == "ready" and source["pages_done"] == 2
    # Named no language: each page was detected and stemmed in its own.
    assert source["language"] == "auto" and sorted(source["languages"]) == ["english", "german"]
    assert chunk_languages(engine, source["id"]) == {"": "german", "storage": "english"}
    # Another inflection of a German word finds the page ("Häuser" and "Haus" share the stem 'haus') ...
    found = search(engine, client, assistant_id, "Häuser")
    assert [r["url"] for r in found] == [f"{site.url}/"]
    assert [r["url"] for r in search(engine, client, assistant_id, "Balkone")] == [f"{site.url}/"]
    # ... and English pages keep English stemming beside them.
    assert search(engine, client, assistant_id, "bicycle")[0]["url"].endswith("/storage")


def test_a_named_language_is_kept_and_checked(engine, site) -> None:
    site.pages = {"/wohnen": ("text/html", html("Wohnen im Sonnenhof", WOHNEN))}
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="url", url=f"{site.url}/wohnen",
                                                    language="english")["id"])
    assert source["language"] == "english" and source["languages"] == ["english"]
    assert chunk_languages(engine, source["id"]) == {"wohnen": "english"}
    assert search(engine, client, assistant_id, "Häuser") == []  # English stemming, as asked
    refused = client.post("/api/sources", json={"assistant_id": assistant_id, "kind": "text", "title": "t",
                                                "content": "x", "language": "klingon"})
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "language"


def test_a_page_in_a_language_postgres_cannot_stem_is_indexed_word_for_word(engine) -> None:
    client, _, assistant_id = knowledge_setup(engine)
    icelandic = ("Opið er alla virka daga frá klukkan níu til fimm. Lokað er um helgar og á almennum frídögum. "
                 "Skrifstofan er á annarri hæð.")
    source = wait_synced(engine, client, add_source(client, assistant_id, kind="text", title="Opnunartími",
                                                    content=icelandic)["id"])
    assert source["language"] == "auto" and source["languages"] == ["simple"]
    found = search(engine, client, assistant_id, "helgar")
    assert [r["chunk_id"] for r in found] == [chunk_rows(engine, source["id"])[0]["id"]]


def german_and_english_pages(engine: Any, **overrides: Any) -> tuple[Any, str]:
    workspace, key = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, **overrides)
        add_page(conn, workspace, assistant, "Wohnen", [("Unser Haus", GERMAN_TEXT)], language="german")
        add_page(conn, workspace, assistant, "Housing", [("Our house", ENGLISH_TEXT)])
    return engine.client(key), assistant


def test_the_offline_answer_speaks_the_users_language(engine) -> None:
    client, assistant = german_and_english_pages(engine)
    german = chat(client, assistant_id=assistant, message="Wie viele Wohnungen hat das Haus?")
    text = text_of(german)
    assert text.startswith("Es ist kein Sprachmodell eingerichtet, daher kann ich keine Antwort formulieren.")
    assert "Haus mit zwölf Wohnungen" in text and last(german, "done")["provider"] == "offline"
    english = chat(client, assistant_id=assistant, message="How many flats does the house have?")
    assert text_of(english).startswith("No language model is configured, so I can't write an answer.")
    # A reply too short to tell ("ok?") stays in the language the user has been writing.
    follow_up = chat(client, assistant_id=assistant, message="ok?",
                     conversation_id=german[0][1]["conversation_id"])
    assert text_of(follow_up) == phrase("offline_empty", "de")  # found nothing, said in German


def test_a_template_that_pins_english_keeps_english(engine) -> None:
    client, assistant = german_and_english_pages(engine, language="en")
    events = chat(client, assistant_id=assistant, message="Wie viele Wohnungen hat das Haus?")
    assert text_of(events).startswith("No language model is configured, so I can't write an answer.")


def test_abstaining_speaks_the_users_language(engine) -> None:
    client, assistant = german_and_english_pages(engine, abstain_threshold=0.3)
    german = chat(client, assistant_id=assistant, message="Wer hat gestern das Fußballspiel gewonnen?")
    assert text_of(german) == phrase("dont_know", "de") and last(german, "done")["provider"] is None
    english = chat(client, assistant_id=assistant, message="Who won the football match yesterday?")
    assert text_of(english) == phrase("dont_know", "en")


def test_the_model_is_told_to_answer_in_the_users_language(engine, openai_api) -> None:
    openai_api.reply = "Zwölf Wohnungen [1]."
    client, assistant = german_and_english_pages(engine)
    chat(client, assistant_id=assistant, message="Wie viele Wohnungen hat das Haus?")
    system = openai_api.requests[-1]["messages"][0]["content"]
    assert "- Answer in the language of the user's latest message (German)." in system
    assert "Answer in English" not in system
    pinned_client, pinned = german_and_english_pages(engine, language="en")
    chat(pinned_client, assistant_id=pinned, message="Wie viele Wohnungen hat das Haus?")
    assert "- Answer in English." in openai_api.requests[-1]["messages"][0]["content"]


def test_the_migration_moves_an_english_built_in_template_to_the_users_language(engine) -> None:
    """A deployment made before this change has a built-in template that says English: it gets a version
    that answers in the user's language; a workspace's own template keeps what it says."""
    workspace, _ = engine.workspace()
    old = {"system_prompt": "Be brief.", "language": "en", "greeting": "Hi"}
    with engine.db() as conn:
        conn.execute("INSERT INTO templates (id, workspace_id, name) VALUES ('legacy', NULL, 'Legacy'), "
                     "('mine', %s, 'Mine')", (workspace,))
        conn.execute("INSERT INTO template_versions (template_id, version, workspace_id, config, created_by) "
                     "VALUES ('legacy', 1, NULL, %s, 'system'), ('mine', 1, %s, %s, 'me')",
                     (Jsonb(old), workspace, Jsonb(old)))
        conn.execute(MIGRATION.read_text())
        rows = conn.execute("""SELECT t.id, t.latest_version, v.config FROM templates t JOIN template_versions v
                               ON v.template_id = t.id AND v.version = t.latest_version
                               WHERE t.id IN ('legacy', 'mine') ORDER BY t.id""").fetchall()
        first = conn.execute("SELECT config FROM template_versions WHERE template_id = 'legacy' AND version = 1"
                             ).fetchone()
    assert [(r["id"], r["latest_version"], r["config"]) for r in rows] == [
        ("legacy", 2, {**old, "language": "auto"}), ("mine", 1, old)]
    assert first["config"] == old  # an assistant pinned to version 1 keeps it
