"""The static web files without a browser: message catalogues complete, widget small, pages served where expected."""

from __future__ import annotations

import gzip
import json
import re

from tests.browser.helpers import ROOT

PUBLIC = ROOT / "public"
CATALOGUES = sorted((PUBLIC / "i18n").glob("*.json"))


def catalogue(code: str) -> dict[str, str]:
    return json.loads((PUBLIC / "i18n" / f"{code}.json").read_text(encoding="utf-8"))


def test_every_language_has_every_message_and_the_same_placeholders():
    english = catalogue("en")
    assert {path.stem for path in CATALOGUES} >= {"en", "de"}
    for path in CATALOGUES:
        messages = json.loads(path.read_text(encoding="utf-8"))
        assert set(messages) == set(english), f"{path.name}: {set(messages) ^ set(english)}"
        for key, text in messages.items():
            assert text.strip(), f"{path.name}: {key} is empty"
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", english[key])), (path.name, key)


def test_every_message_the_code_asks_for_exists():
    english = catalogue("en")
    used: set[str] = set()
    for path in [PUBLIC / "widget.js", *sorted((PUBLIC / "admin").glob("*.js"))]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_]+)["']""", path.read_text(encoding="utf-8")))
        used |= set(re.findall(r'"(widget\.[a-z_]+)"', path.read_text(encoding="utf-8")))
    # Keys the console builds from API values (the Literals of api/sources.py, api/conversations.py, ...).
    used |= {f"sources.kind_{k}" for k in ("url", "site", "sitemap", "text", "markdown", "file")}
    used |= {f"sources.status_{s}" for s in ("queued", "crawling", "indexing", "ready", "failed")}
    used |= {f"sources.page_{s}" for s in ("pending", "ready", "failed")}
    used |= {f"conversations.role_{r}" for r in ("user", "assistant", "system")}
    used |= {f"conversations.status_{s}" for s in ("partial", "failed")}
    used |= {"keys.scope_admin", "keys.scope_chat", "feedback.up", "feedback.down"}
    used |= {f"nav.{v}" for v in ("assistants", "templates", "sources", "conversations", "feedback", "keys", "metrics")}
    used |= {f"metrics.range_{r}" for r in ("1h", "24h", "7d", "30d")}
    assert len(used) > 150
    assert sorted(used - set(english)) == []


def test_the_widget_bakes_in_exactly_the_english_widget_messages():
    # The widget must never show a bare key, even when /i18n/ cannot be fetched.
    source = (PUBLIC / "widget.js").read_text(encoding="utf-8")
    baked = dict(re.findall(r'"(widget\.[a-z_]+)":\s*"([^"]*)"', source.split("const EN = {", 1)[1].split("};", 1)[0]))
    english = {k: v for k, v in catalogue("en").items() if k.startswith("widget.")}
    assert baked == english


def test_the_widget_is_small():
    raw = (PUBLIC / "widget.js").read_bytes()
    assert len(gzip.compress(raw, 9)) < 30_000
    assert "import " not in raw.decode()  # one classic script, no modules, no framework


def test_the_router_serves_the_widget_the_console_and_the_catalogues(engine):
    client = engine.client()
    widget = client.get("/widget.js")
    assert widget.status_code == 200
    assert widget.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    slashless = client.get("/admin", follow_redirects=True)
    assert slashless.status_code == 200 and 'src="/admin/app.js"' in slashless.text
    assert client.get("/admin/").text == slashless.text
    german = client.get("/i18n/de.json")
    assert german.json()["widget.open"] == "Chat öffnen"
