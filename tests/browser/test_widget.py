"""The widget in a real browser, embedded by one script tag in a page on another origin."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.helpers import screenshot
from tests.fakes.chat_fixtures import wait_for

PRICES = ("Das Basispaket kostet 20 Euro im Monat und enthält E-Mail-Support. "
          "Das Profipaket kostet 50 Euro im Monat und enthält Telefon-Support rund um die Uhr. "
          "Alle Pakete sind monatlich kündbar.")

# A host page with hostile CSS: none of it may reach the widget, and the widget's CSS must not reach it.
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Customer site</title>
<style>
  * {{ color: rgb(0, 128, 0) !important; letter-spacing: 3px; font-family: serif; }}
  button {{ background: rgb(255, 0, 0) !important; border-radius: 0 !important; }}
  section, h2, form {{ margin: 40px; }}
</style></head><body>
<h1>Welcome to our shop</h1><div class="panel" id="host-panel">Host content</div><h2 id="host-h2">News</h2>
<script src="{api}/widget.js" data-assistant="{assistant}" data-key="{key}"></script>
</body></html>"""


def require_cors(engine: Any, origin: str) -> None:
    """The widget on another site needs CORS on its routes (shared.core.http.WidgetCorsMiddleware); say so plainly."""
    reply = engine.client().options("/api/assistants/asst_1/public", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert reply.headers.get("access-control-allow-origin") == origin, (
        "the API answers no CORS preflight for the widget's routes, so no browser on another site can use it")


def setup_assistant(engine: Any, origin: str, **overrides: Any) -> tuple[Any, dict[str, Any], str]:
    """A German assistant with a ready text source and a chat key allowed on `origin`."""
    require_cors(engine, origin)
    _, admin_key = engine.workspace()
    admin = engine.client(admin_key)
    overrides = {"language": "de", "greeting": "Hallo! Wie kann ich Ihnen helfen?",
                 "suggested_questions": ["Was kostet das Profipaket?"], "retrieval": {"mode": "keyword"}, **overrides}
    assistant = admin.post("/api/assistants", json={"name": "Kundendienst", "allowed_origins": [origin],
                                                    "overrides": overrides}).json()
    source = admin.post("/api/sources", json={"assistant_id": assistant["id"], "kind": "text", "title": "Preisliste",
                                              "content": PRICES})
    assert source.status_code == 202, source.text
    engine.wait_for_queue()
    assert admin.get(f"/api/sources/{source.json()['id']}").json()["status"] == "ready"
    created = admin.post("/api/keys", json={"scope": "chat", "name": "site", "allowed_origins": [origin],
                                            "assistant_ids": [assistant["id"]]}).json()
    return admin, assistant, created["key"]


def widget(page: Any) -> Any:
    return page.locator("dialog-engine-widget")


def test_widget_on_another_origin_answers_with_citations_and_keeps_history(engine, browser, page_server):
    admin, assistant, key = setup_assistant(engine, page_server.url)
    page_server.html = PAGE.format(api=engine.url, assistant=assistant["id"], key=key)
    page = browser(locale="en-US").new_page()  # an English browser: German comes from the assistant's language
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_server.url + "/")

    launcher = page.get_by_role("button", name="Chat öffnen")
    expect(launcher).to_be_visible()
    # The host page's CSS stays out of the shadow root, and ours stays in.
    styles = launcher.evaluate("b => { const s = getComputedStyle(b); return [s.backgroundColor, s.borderRadius]; }")
    assert styles == ["rgb(47, 111, 237)", "50%"]
    host_panel = page.locator("#host-panel").evaluate("e => getComputedStyle(e).position")
    assert host_panel == "static"

    launcher.click()
    panel = page.get_by_role("dialog", name="Kundendienst")
    expect(panel).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    box = page.get_by_role("textbox", name="Ihre Nachricht")
    expect(box).to_be_focused()
    assert panel.evaluate("p => getComputedStyle(p.querySelector('.body') || p).letterSpacing") == "normal"
    expect(panel.get_by_text("Hallo! Wie kann ich Ihnen helfen?")).to_be_visible()

    page.get_by_role("button", name="Was kostet das Profipaket?").click()  # a suggested question
    answer = panel.locator(".msg.assistant:not(.greeting)").last
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(answer).to_contain_text("Das Profipaket kostet 50 Euro")
    citation = answer.locator("a.cite").first
    expect(citation).to_have_text("[1]")
    expect(citation).to_have_attribute("aria-label", "Quelle 1: Preisliste")
    # Hover shows the quoted passage; a click reveals it under the answer (there is no page to open).
    citation.hover()
    tooltip = page.get_by_role("tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("Profipaket kostet 50 Euro")
    screenshot(page, "widget-answer-desktop")
    citation.click()
    quoted = answer.locator("details.sources li").first
    expect(quoted).to_be_visible()
    expect(quoted).to_be_focused()
    expect(quoted).to_contain_text("Preisliste")
    assert page.url == page_server.url + "/"  # the host page's URL is untouched

    # Thumbs up reaches the engine with the assistant message id from the `done` event.
    helpful = answer.get_by_role("button", name="Hilfreich", exact=True)
    helpful.click()
    expect(answer.get_by_text("Danke für Ihr Feedback.")).to_be_visible()
    expect(answer.get_by_role("button", name="Hilfreich", exact=True)).to_have_attribute("aria-pressed", "true")
    feedback = admin.get("/api/feedback").json()["data"]
    assert [(f["rating"], f["assistant_id"]) for f in feedback] == [("up", assistant["id"])]

    # A reload keeps the conversation (and the open panel); the next question continues it.
    page.reload()
    panel = page.get_by_role("dialog", name="Kundendienst")
    expect(panel).to_be_visible()
    expect(panel.locator(".msg.user")).to_have_text(["Sie: Was kostet das Profipaket?"])
    restored = panel.locator(".msg.assistant:not(.greeting)").last
    expect(restored.locator("a.cite").first).to_have_text("[1]")
    expect(restored.get_by_role("button", name="Hilfreich", exact=True)).to_have_attribute("aria-pressed", "true")
    page.get_by_role("textbox", name="Ihre Nachricht").fill("Ist das Paket monatlich kündbar?")
    page.keyboard.press("Enter")
    expect(panel.locator(".msg.assistant:not(.greeting)")).to_have_count(2)
    expect(panel.locator(".msg.assistant:not(.greeting)").last).to_contain_text("monatlich kündbar")
    # The text shows while it streams; the reply is stored just before the `done` event, so ask until it is.
    wait_for(lambda: [c["message_count"] for c in admin.get("/api/conversations").json()["data"]] == [4])

    # Escape closes the panel and gives focus back to the launcher.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name="Chat öffnen")).to_be_focused()
    assert errors == []


def test_widget_fills_a_phone_screen_and_explains_failures(engine, browser, page_server):
    admin, assistant, key = setup_assistant(engine, page_server.url)
    page_server.html = PAGE.format(api=engine.url, assistant=assistant["id"], key=key)
    page = browser(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True,
                   locale="de-DE").new_page()
    page.goto(page_server.url + "/")
    page.get_by_role("button", name="Chat öffnen").click()
    panel = page.get_by_role("dialog", name="Kundendienst")
    expect(panel).to_be_visible()
    assert panel.bounding_box() == {"x": 0, "y": 0, "width": 375, "height": 667}
    expect(panel.get_by_role("button", name="Chat schließen")).to_be_visible()

    # Rate-limited: the engine's 429 (Retry-After and our error body) becomes a plain sentence; the text stays.
    def too_many(route: Any) -> None:
        body = {"error": {"code": "rate_limited", "message": "Too many chat requests for this key: at most 1 per "
                          "minute. Try again in 42 s.", "details": {"retry_after": 42}}}
        route.fulfill(status=429, content_type="application/json", body=json.dumps(body),
                      headers={"Retry-After": "42", "Access-Control-Allow-Origin": page_server.url,
                               "Access-Control-Expose-Headers": "retry-after"})

    page.route(f"{engine.url}/api/chat", too_many)
    box = page.get_by_role("textbox", name="Ihre Nachricht")
    box.fill("Was kostet das Basispaket?")
    page.get_by_role("button", name="Senden").click()
    alert = panel.get_by_role("alert")
    expect(alert).to_have_text("Zu viele Nachrichten. Bitte versuchen Sie es in 42 s erneut.")
    expect(box).to_have_value("Was kostet das Basispaket?")
    expect(panel.locator(".msg.user")).to_have_count(0)
    screenshot(page, "widget-rate-limited-phone")

    # Unreachable engine.
    page.unroute(f"{engine.url}/api/chat")
    page.route(f"{engine.url}/api/chat", lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name="Senden").click()
    expect(alert).to_contain_text("Der Assistent ist gerade nicht erreichbar.")

    # Back online: the same text goes through and the answer streams in, full screen.
    page.unroute(f"{engine.url}/api/chat")
    page.get_by_role("button", name="Senden").click()
    expect(alert).to_have_text("")
    answer = panel.locator(".msg.assistant:not(.greeting)").last
    expect(answer).to_contain_text("Basispaket kostet 20 Euro")
    expect(answer.locator("a.cite").first).to_be_visible()
    screenshot(page, "widget-answer-phone")


def test_widget_shows_the_answer_while_it_streams(engine, browser, page_server, openai_api):
    """With a model that answers in slow pieces, the text grows on screen before the turn is done."""
    openai_api.reply = "Das Profipaket kostet 50 Euro im Monat [1]. Es enthält Telefon-Support rund um die Uhr [1]."
    openai_api.chunk_chars = 8
    openai_api.delay = 0.08
    admin, assistant, key = setup_assistant(engine, page_server.url)
    page_server.html = PAGE.format(api=engine.url, assistant=assistant["id"], key=key)
    page = browser().new_page()
    page.goto(page_server.url + "/")
    page.get_by_role("button", name="Chat öffnen").click()
    page.evaluate("""() => {
        const root = document.querySelector('dialog-engine-widget').shadowRoot;
        window.seen = [];
        new MutationObserver(() => {
            const msg = [...root.querySelectorAll('.msg.assistant:not(.greeting)')].pop();
            if (msg) window.seen.push([msg.getAttribute('aria-busy'), msg.querySelector('.body').textContent]);
        }).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
    }""")
    page.get_by_role("textbox", name="Ihre Nachricht").fill("Was kostet das Profipaket?")
    page.keyboard.press("Enter")
    answer = page.locator("dialog-engine-widget .msg.assistant:not(.greeting)").last
    expect(answer).to_have_attribute("aria-busy", "false", timeout=20_000)
    expect(answer.locator(".body")).to_have_text(openai_api.reply)
    seen = page.evaluate("window.seen")
    partial = {text for busy, text in seen if busy == "true" and text.strip() and "•••" not in text}
    assert len(partial) >= 3, seen  # several growing states were on screen while it streamed
    assert all(openai_api.reply.startswith(text) for text in partial)
    expect(answer.locator("a.cite")).to_have_count(2)


def test_widget_sends_a_signed_user_id_and_anonymous_visitors_keep_their_own_token(engine, browser, page_server):
    admin, assistant, _ = setup_assistant(engine, page_server.url)
    created = admin.post("/api/keys", json={"scope": "chat", "assistant_ids": [assistant["id"]]}).json()
    user_hash = hmac.new(created["identity_secret"].encode(), b"cust-7", hashlib.sha256).hexdigest()
    signed_tag = (f'<script src="{engine.url}/widget.js" data-assistant="{assistant["id"]}" '
                  f'data-key="{created["key"]}" data-user-id="cust-7" data-user-hash="{user_hash}"></script>')
    host = PAGE.format(api=engine.url, assistant="", key="").split("<script")[0]
    page_server.html = host + signed_tag + "</body></html>"
    page = browser().new_page()
    page.goto(page_server.url + "/")
    page.get_by_role("button", name="Chat öffnen").click()
    page.get_by_role("textbox", name="Ihre Nachricht").fill("Was kostet das Profipaket?")
    page.keyboard.press("Enter")
    answer = page.locator("dialog-engine-widget .msg.assistant:not(.greeting)").last
    expect(answer).to_contain_text("Profipaket kostet 50 Euro")
    assert [c["user_id"] for c in admin.get("/api/conversations").json()["data"]] == ["cust-7"]

    # Two anonymous visitors of one site: each gets its own token and conversation, neither sees the other's.
    page_server.html = PAGE.format(api=engine.url, assistant=assistant["id"], key=created["key"])
    tokens = []
    for question in ("Was kostet das Basispaket?", "Ist das Paket monatlich kündbar?"):
        visitor = browser().new_page()
        visitor.goto(page_server.url + "/")
        visitor.get_by_role("button", name="Chat öffnen").click()
        visitor.get_by_role("textbox", name="Ihre Nachricht").fill(question)
        visitor.keyboard.press("Enter")
        expect(visitor.locator("dialog-engine-widget .msg.assistant:not(.greeting)").last).to_have_attribute(
            "aria-busy", "false")
        tokens.append(visitor.evaluate("Object.keys(localStorage).filter(k => k.includes(':visitor:'))"
                                       ".map(k => localStorage.getItem(k))[0]"))
    assert all(t and t.startswith("vt1.") for t in tokens) and tokens[0] != tokens[1]
    conversations = admin.get("/api/conversations").json()["data"]
    assert len(conversations) == 3
    other = next(c["id"] for c in conversations if c["title"].startswith("Was kostet das Basis"))
    reply = httpx.get(f"{engine.url}/api/conversations/{other}", headers={
        "Authorization": f"Bearer {created['key']}", "x-visitor-token": tokens[1]})
    assert reply.status_code == 404


def test_a_key_for_another_site_is_refused_with_a_clear_message(engine, browser, page_server):
    admin, assistant, _ = setup_assistant(engine, page_server.url)
    key = admin.post("/api/keys", json={"scope": "chat", "allowed_origins": ["https://shop.example"],
                                        "assistant_ids": [assistant["id"]]}).json()["key"]
    page_server.html = PAGE.format(api=engine.url, assistant=assistant["id"], key=key)
    page = browser(locale="de-DE").new_page()  # the assistant's language is not readable: the browser's it is
    page.goto(page_server.url + "/")
    page.get_by_role("button", name="Chat öffnen").click()
    panel = page.get_by_role("dialog")
    alert = panel.get_by_role("alert")
    expect(alert).to_have_text("Dieser Chat ist auf dieser Website nicht verfügbar.")
    page.get_by_role("textbox", name="Ihre Nachricht").fill("Was kostet das Profipaket?")
    page.keyboard.press("Enter")
    expect(alert).to_have_text("Dieser Chat ist auf dieser Website nicht verfügbar.")
    expect(panel.locator(".msg.user")).to_have_count(0)
    assert admin.get("/api/conversations").json()["count"] == 0


def test_the_widget_routes_answer_cors_preflights_from_any_site_and_admin_routes_do_not(engine):
    client = engine.client()
    site = {"Origin": "https://shop.example", "Access-Control-Request-Headers": "authorization, content-type"}
    for path, method in [("/api/chat", "POST"), ("/api/feedback", "POST"), ("/api/assistants/asst_1/public", "GET"),
                         ("/api/conversations/conv_1", "GET")]:
        reply = client.options(path, headers={**site, "Access-Control-Request-Method": method})
        assert reply.status_code in (200, 204), (path, reply.status_code)
        assert reply.headers.get("access-control-allow-origin") == "https://shop.example", path
        assert "authorization" in reply.headers["access-control-allow-headers"].lower(), path
        assert "access-control-allow-credentials" not in reply.headers, path  # never cookies
    admin = client.options("/api/keys", headers={**site, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in admin.headers
    catalogue = client.get("/i18n/de.json", headers={"Origin": "https://shop.example"})
    assert catalogue.headers.get("access-control-allow-origin") in ("*", "https://shop.example")
    # CORS lets the browser ask; the key's own origins still decide.
    feedback = client.post("/api/feedback", json={"message_id": "msg_1", "rating": "up"},
                           headers={"Origin": "https://shop.example", "Authorization": "Bearer de_chat_wrong"})
    assert feedback.status_code == 401
    assert feedback.headers.get("access-control-allow-origin") == "https://shop.example"


def test_an_assistant_that_answers_in_the_users_language_shows_the_browsers(engine, browser, page_server):
    """language 'auto' (the built-in template's): the widget speaks the browser's language, and so does the answer."""
    _, assistant, key = setup_assistant(engine, page_server.url, language="auto")
    page_server.html = PAGE.format(api=engine.url, assistant=assistant["id"], key=key)
    page = browser(locale="de-DE").new_page()
    page.goto(page_server.url + "/")
    page.get_by_role("button", name="Chat öffnen").click()
    page.get_by_role("textbox", name="Ihre Nachricht").fill("Was kostet das Profipaket?")
    page.keyboard.press("Enter")
    # No model key here: the offline answerer quotes the price list, introduced in German.
    answer = page.get_by_role("dialog").locator(".msg.assistant").last
    expect(answer).to_contain_text("Es ist kein Sprachmodell eingerichtet")
    expect(answer).to_contain_text("50 Euro")
