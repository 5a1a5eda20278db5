"""The admin console at /admin in a real browser, against the whole engine with the offline answerer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.helpers import screenshot

HANDBOOK = ("Urlaub beantragen Sie im Personalportal mindestens zwei Wochen im Voraus. "
            "Krankmeldungen schicken Sie am ersten Tag an personal@example.com. "
            "Homeoffice ist an drei Tagen pro Woche möglich.")

FAQ = "Die Lieferung dauert drei Werktage. Rücksendungen sind 30 Tage lang kostenlos."


def sign_in(page: Any, engine: Any, key: str) -> None:
    page.goto(engine.url + "/admin")  # without the slash, as people type it
    page.get_by_label("Admin key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation")).to_be_visible()


def test_console_signs_in_creates_an_assistant_adds_text_and_chats(engine, browser):
    _, admin_key = engine.workspace()
    page = browser().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(engine.url + "/admin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Admin key").fill("de_admin_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("This key is not valid or has been revoked.")
    page.get_by_label("Admin key").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Assistants", level=2)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('de.admin.key')") == admin_key

    # Create an assistant from the built-in template: German, with a greeting and a suggested question.
    page.get_by_role("button", name="New assistant").click()
    page.get_by_label("Name").fill("Personalfragen")
    page.get_by_label("Language", exact=True).select_option("de")
    page.get_by_label("Greeting").fill("Guten Tag! Fragen Sie mich zu Urlaub und Homeoffice.")
    page.get_by_label("Suggested questions").fill("Wie beantrage ich Urlaub?")
    page.get_by_role("button", name="Create").click()
    row = page.get_by_role("row", name=re.compile("Personalfragen"))
    expect(row).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Assistant “Personalfragen” created.")

    # Add a text source and watch it reach `ready` (the page polls every 2 s).
    row.get_by_role("link", name="Sources").click()
    expect(page.get_by_role("heading", name="Add knowledge")).to_be_visible()
    page.get_by_label("Kind").select_option("text")
    expect(page.get_by_label("URL")).to_be_hidden()
    page.get_by_label("Title").fill("Personalhandbuch")
    page.get_by_label("Content").fill(HANDBOOK)
    page.get_by_role("button", name="Add source").click()
    source = page.locator("#sources tbody tr[data-source]")
    expect(source).to_have_count(1)
    expect(source.locator("[data-status]")).to_have_attribute("data-status", "ready", timeout=20_000)
    expect(source).to_contain_text("1 of 1 pages, 0 failed")
    source.get_by_role("button", name="Pages").click()
    expect(page.locator(".pages-row")).to_contain_text("ready")
    screenshot(page, "console-sources")

    # Chat with it: the console injects the real widget with a chat key it creates for this session.
    page.get_by_role("link", name="Assistants").click()
    page.get_by_role("row", name=re.compile("Personalfragen")).get_by_role("button", name="Chat").click()
    panel = page.get_by_role("dialog", name="Personalfragen")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Guten Tag! Fragen Sie mich zu Urlaub und Homeoffice.")
    panel.get_by_role("button", name="Wie beantrage ich Urlaub?").click()
    answer = panel.locator(".msg.assistant:not(.greeting)").last
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(answer).to_contain_text("im Personalportal mindestens zwei Wochen im Voraus")
    expect(answer.locator("a.cite").first).to_have_attribute("aria-label", "Quelle 1: Personalhandbuch")
    answer.get_by_role("button", name="Nicht hilfreich").click()
    expect(answer).to_contain_text("Danke für Ihr Feedback.")
    screenshot(page, "console-chat")

    # The chat key shows up under API keys, and the conversation and its feedback in their sections.
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("row", name=re.compile("Console test chat"))).to_contain_text("chat (widget, public)")
    page.get_by_role("link", name="Feedback").click()
    expect(page.get_by_role("row", name=re.compile("Not helpful"))).to_contain_text("Personalportal")
    assert errors == []


def test_console_templates_versions_diff_keys_conversations_and_metrics(engine, browser, tmp_path: Path):
    _, admin_key = engine.workspace()
    admin = engine.client(admin_key)
    assistant = admin.post("/api/assistants", json={"name": "Support",
                                                    "overrides": {"retrieval": {"mode": "keyword"}}}).json()
    admin.post("/api/sources", json={"assistant_id": assistant["id"], "kind": "text", "title": "FAQ", "content": FAQ})
    engine.wait_for_queue()
    for question in ("Wie lange dauert die Lieferung?", "Are returns free?"):
        reply = admin.post("/api/chat", json={"assistant_id": assistant["id"], "message": question, "stream": False})
        assert reply.status_code == 200, reply.text
    page = browser(accept_downloads=True).new_page()
    sign_in(page, engine, admin_key)

    # Templates: create one, save a change as version 2, and diff the two versions.
    page.get_by_role("link", name="Templates").click()
    page.get_by_role("button", name="New template").click()
    page.get_by_label("Name").fill("Freundlich")
    config = json.loads(page.get_by_label("Configuration (JSON)").input_value())
    config["greeting"] = "Hallo!"
    page.get_by_label("Configuration (JSON)").fill(json.dumps(config, indent=2))
    page.get_by_role("button", name="Create").click()
    row = page.get_by_role("row", name=re.compile("Freundlich"))
    expect(row).to_contain_text("v1")
    row.get_by_role("button", name="Edit").click()
    config = json.loads(page.get_by_label("Configuration (JSON)").input_value())
    assert config["greeting"] == "Hallo!"
    config["temperature"] = 0.7
    page.get_by_label("Configuration (JSON)").fill(json.dumps(config, indent=2))
    page.get_by_role("button", name="Save as new version").click()
    expect(page.get_by_role("status")).to_contain_text("saved as version 2")
    page.get_by_role("row", name=re.compile("Freundlich")).get_by_role("button", name="Versions").click()
    diff = page.locator(".diff")
    expect(diff.locator(".diff-stats")).to_have_text("+1 / −1 lines")
    expect(diff.locator("tr.del")).to_contain_text('"temperature": 0.2')
    expect(diff.locator("tr.add")).to_contain_text('"temperature": 0.7')
    screenshot(page, "console-template-diff")

    # API keys: a new key is shown once, then only its prefix; revoking stops it at once.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("Website")
    page.get_by_label("Scope").select_option("chat")
    page.get_by_role("button", name="Create key").click()
    created = page.locator("#created-key").input_value()
    assert created.startswith("de_chat_")
    # A chat key comes with its identity secret (shown once) and reaches only the assistant chosen.
    assert page.locator("#created-identity-secret").input_value().startswith("de_idsec_")
    expect(page.get_by_role("row", name=re.compile("Website"))).to_contain_text(assistant["name"])
    with_key = {"Authorization": f"Bearer {created}"}
    assert httpx.get(f"{engine.url}/api/conversations/none", headers=with_key).status_code == 404
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key Website").click()
    expect(page.get_by_role("row", name=re.compile("Website"))).to_contain_text("revoked")
    assert httpx.get(f"{engine.url}/api/conversations/none", headers=with_key).status_code == 401
    assert created not in page.content()

    # Conversations: search reaches into message text; read one; export it as Markdown.
    page.get_by_role("link", name="Conversations").click()
    expect(page.locator("tr[data-conversation]")).to_have_count(2)
    page.get_by_label("Search").fill("Werktage")
    expect(page.locator("tr[data-conversation]")).to_have_count(1)
    expect(page.locator("tr[data-conversation]")).to_contain_text("Wie lange dauert die Lieferung?")
    page.get_by_role("button", name="Wie lange dauert die Lieferung?").click()
    conversation = page.locator("#conversation")
    expect(conversation.locator(".message.assistant")).to_contain_text("Die Lieferung dauert drei Werktage.")
    expect(conversation.locator(".citations")).to_contain_text("FAQ")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export Markdown").click()
    saved = tmp_path / "conversation.md"
    download.value.save_as(saved)
    assert "Wie lange dauert die Lieferung?" in saved.read_text()
    screenshot(page, "console-conversations")

    # Metrics: four inline SVG charts; the two chats' time to first token is there.
    page.get_by_role("link", name="Metrics").click()
    expect(page.locator("svg.chart")).to_have_count(4)
    expect(page.locator("#chart-ttft .figure")).to_contain_text("p50")
    expect(page.locator("#chart-ttft svg circle").first).to_be_attached()
    expect(page.locator("#chart-tokens svg rect").first).to_be_attached()
    screenshot(page, "console-metrics")

    # Sources: a file upload becomes ready; a page that cannot be fetched shows its error per page.
    page.get_by_role("link", name="Sources").click()
    page.get_by_label("Kind").select_option("file")
    notes = tmp_path / "rueckgabe.md"
    notes.write_text("# Rückgabe\n\nUmtausch ist im Laden innerhalb von 14 Tagen möglich.\n", encoding="utf-8")
    page.get_by_label("File", exact=True).set_input_files(notes)
    page.get_by_role("button", name="Add source").click()
    uploaded = page.locator("#sources tbody tr[data-source]", has_text="Rückgabe")
    expect(uploaded.locator("[data-status]")).to_have_attribute("data-status", "ready", timeout=20_000)
    page.get_by_label("Kind").select_option("url")
    page.get_by_label("URL", exact=True).fill("http://127.0.0.1:9/gone")
    page.get_by_role("button", name="Add source").click()
    broken = page.locator("#sources tbody tr[data-source]", has_text="127.0.0.1:9/gone")
    expect(broken.locator("[data-status]")).to_have_attribute("data-status", "failed", timeout=30_000)
    broken.get_by_role("button", name="Pages").click()
    expect(page.locator(".pages-row tr.failed")).to_contain_text("127.0.0.1:9/gone")
    expect(page.locator(".pages-row tr.failed td.error")).not_to_be_empty()
    screenshot(page, "console-source-errors", full_page=True)


def test_console_speaks_german_to_a_german_browser(engine, browser):
    _, admin_key = engine.workspace()
    page = browser(locale="de-DE").new_page()
    page.goto(engine.url + "/admin/")
    expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
    page.get_by_label("Admin-Schlüssel").fill(admin_key)
    page.get_by_role("button", name="Anmelden").click()
    nav = page.get_by_role("navigation")
    expect(nav.get_by_role("link")).to_have_text(["Assistenten", "Vorlagen", "Quellen", "Gespräche", "Feedback",
                                                  "API-Schlüssel", "Kennzahlen", "Evaluierung"])
    expect(page.get_by_role("cell", name="Noch keine Assistenten. Legen Sie einen an, um zu beginnen.")).to_be_visible()
    engine.client(admin_key).post("/api/assistants", json={"name": "Kundendienst"})
    nav.get_by_role("link", name="Quellen").click()
    expect(page.get_by_role("heading", name="Wissen hinzufügen")).to_be_visible()
    expect(page.get_by_label("Art")).to_have_value("url")
    expect(page.get_by_role("button", name="Quelle hinzufügen")).to_be_visible()
    expect(page.get_by_role("cell", name="Dieser Assistent hat noch keine Quellen.")).to_be_visible()
    screenshot(page, "console-german")
    page.get_by_label("Sprache der Oberfläche").select_option("en")
    expect(nav.get_by_role("link").first).to_have_text("Assistants")
    page.reload()
    expect(nav.get_by_role("link").first).to_have_text("Assistants")  # the choice is remembered
