"""One origin check (shared/guard/origins.py) for chat keys and assistants: the same spelling rules everywhere, and
the widget's public view agrees with the chat turn about the engine's own pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.fakes.chat_fixtures import make_assistant, new_chat_key


def test_a_chat_key_listing_an_origin_in_capitals_lets_that_site_in(engine) -> None:
    # Browsers send the host in lower case; a key whose list was typed as "https://Shop.Example/" must match it.
    workspace, admin = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace)
    key = new_chat_key(engine, admin, assistant, allowed_origins=["https://Shop.Example/"])["key"]
    shop = engine.client(key, origin="https://shop.example").get(f"/api/assistants/{assistant}/public")
    assert shop.status_code == 200, shop.text
    evil = engine.client(key, origin="https://evil.example").get(f"/api/assistants/{assistant}/public")
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "origin_not_allowed"


def test_the_widget_view_lets_the_engines_own_pages_in_as_the_chat_turn_does(engine) -> None:
    workspace, admin = engine.workspace()
    with engine.db() as conn:
        assistant = make_assistant(conn, workspace, allowed_origins=["https://shop.example"])
    key = new_chat_key(engine, admin, assistant)["key"]
    own = engine.client(key, origin=f"http://{urlsplit(engine.url).netloc}")
    assert own.get(f"/api/assistants/{assistant}/public").status_code == 200
    turn = own.post("/api/chat", json={"assistant_id": assistant, "message": "Hello?", "stream": False})
    assert turn.status_code == 200, turn.text
