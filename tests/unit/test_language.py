"""Which language a page or a message is in, and which language an answer is written in (shared.i18n.language,
shared.i18n.phrases)."""

from __future__ import annotations

from shared.i18n.language import answer_language, detect, message_language, text_search_config
from shared.i18n.phrases import PHRASES, phrase

GERMAN_TEXT = ("Die Genossenschaft besitzt ein Haus mit zwölf Wohnungen am Rand der Altstadt. Jede Wohnung hat "
               "einen eigenen Kellerraum und einen Balkon zur Gartenseite.")
FRENCH_TEXT = ("La coopérative possède une maison de douze appartements au bord de la vieille ville. Chaque "
               "appartement a sa propre cave et un balcon côté jardin.")
ENGLISH_TEXT = "The co-operative owns one house with twelve flats. Every flat has its own storage room and a balcony."


def test_a_pages_language_gives_its_full_text_configuration() -> None:
    assert text_search_config("Wohnen", GERMAN_TEXT) == "german"
    assert text_search_config("Logement", FRENCH_TEXT) == "french"
    assert text_search_config("Flats", ENGLISH_TEXT) == "english"


def test_detection_reads_the_prose_past_code_links_and_characters_cld2_refuses() -> None:
    code = "```python\nprint('Read the settings and return the value of the option for this user')\n```\n"
    page = f"{code}Siehe [die Anleitung](https://example.com/en/guide). {GERMAN_TEXT}\ud800\ufffe\x85\x01"
    assert text_search_config("Wohnen", page) == "german"
    assert text_search_config("", "4711-22 / 18.50") == "simple"  # nothing to tell by


def test_text_without_letters_has_no_language() -> None:
    assert detect("") is None and detect("12:30 — 14:00 / +49 30 1234") is None


def test_a_message_too_short_to_tell_is_judged_with_the_users_previous_ones() -> None:
    earlier = ["Wie viele Wohnungen hat das Haus am Rand der Altstadt?", "Und hat jede Wohnung einen Balkon?"]
    assert message_language("ok?", earlier) == "de"
    assert message_language("Quelle est la taille des appartements avec balcon côté jardin ?") == "fr"


def test_a_template_that_pins_a_language_keeps_it_else_the_user_is_answered_in_theirs() -> None:
    assert answer_language("de", "fr") == "de"
    assert answer_language("auto", "fr") == "fr" and answer_language(" AUTO ", "fr") == "fr"
    assert answer_language("", "es") == "es"
    assert answer_language("auto", None) == "en"


def test_every_language_has_every_phrase() -> None:
    assert {name for block in PHRASES.values() for name in block} == set(PHRASES["en"])
    assert all(set(block) == set(PHRASES["en"]) for block in PHRASES.values())
    assert phrase("dont_know", "de-AT") == PHRASES["de"]["dont_know"]
    assert phrase("dont_know", "xx") == PHRASES["en"]["dont_know"]  # no block: English
