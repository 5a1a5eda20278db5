"""PII redaction: what a model, the logs and the index see, and what an admin gets back."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from shared.guard.pii import KINDS, iban_valid, luhn_valid, redact, restore


def redact_all(texts: Iterable[str], kinds: Iterable[str] = KINDS) -> tuple[list[str], dict[str, str]]:
    """A conversation's messages in order with one mapping: a value keeps its placeholder across turns.

    Redacting the stored originals again gives the same placeholders, so the mapping need not be stored.
    """
    mapping: dict[str, str] = {}
    kinds = tuple(kinds)
    out = []
    for text in texts:
        redacted, mapping = redact(text, mapping, kinds)
        out.append(redacted)
    return out, mapping


POSITIVES = [
    # (kind, value) as people write them
    ("EMAIL", "max.mustermann@example.de"),
    ("EMAIL", "Erika_M+shop@mail.example.co.uk"),
    ("EMAIL", "jürgen@example.com".replace("ü", "ue")),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "DE89370400440532013000"),
    ("IBAN", "de89 3704 0044 0532 0130 00"),
    ("IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "AT61 1904 3002 3457 3201"),
    ("IBAN", "CH93 0076 2011 6238 5295 7"),
    ("IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
    ("CARD", "4111 1111 1111 1111"),
    ("CARD", "4111-1111-1111-1111"),
    ("CARD", "4012888888881881"),
    ("CARD", "5555 5555 5555 4444"),
    ("CARD", "2223 0031 2200 3222"),
    ("CARD", "3782 822463 10005"),
    ("CARD", "6011 1111 1111 1117"),
    ("PHONE", "+49 30 12345678"),
    ("PHONE", "+49 (0)30 1234567"),
    ("PHONE", "+49-171-1234567"),
    ("PHONE", "0049 30 1234567"),
    ("PHONE", "030 12345678"),
    ("PHONE", "030/1234567"),
    ("PHONE", "(030) 123 456 78"),
    ("PHONE", "0171 1234567"),
    ("PHONE", "0171-123 45 67"),
    ("PHONE", "01711234567"),
    ("PHONE", "089 12345-678"),
    ("PHONE", "+1 (555) 123-4567"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "+33 1 23 45 67 89"),
]

NEGATIVES = [
    "Bestellung #100234 vom 12.03.2024",
    "Bestellnummer 2024-12345678, Kundennummer 0012345678",
    "Rechnung Nr. 1234567890123 über 1.299,00 €",
    "Preis: 0,99 EUR, 19,99 € oder 1.234.567,89 €",
    "Termin am 03/12/2024 um 10:30 Uhr, Lieferung 2024-03-12",
    "PLZ 01067 Dresden, 10115 Berlin",
    "Artikel 0815-4711, Menge 3",
    "EAN 4006381333931 und ISBN 978-3-16-148410-0",
    "Order 4111111111111112 (fails Luhn) and 1234567812345670 (no card brand)",
    "Falsche IBAN DE89 3704 0044 0532 0130 01 (Prüfziffer)",
    "Tracking 1Z999AA10123456784, Version 1.2.3.4, IP 192.168.0.1",
    "Zeitraum 2023-2024, Seite 12-15, Tel. intern 1234",
    "name@localhost ist keine Adresse",
]


@pytest.mark.parametrize(("kind", "value"), POSITIVES)
def test_pii_in_a_sentence_becomes_a_placeholder_and_comes_back(kind: str, value: str) -> None:
    text = f"Hallo, bitte notieren: {value}. Danke!"
    redacted, mapping = redact(text)
    assert redacted == f"Hallo, bitte notieren: [{kind}_1]. Danke!"
    assert mapping == {f"[{kind}_1]": value}
    assert restore(redacted, mapping) == text


@pytest.mark.parametrize("text", NEGATIVES)
def test_order_numbers_dates_prices_stay(text: str) -> None:
    assert redact(text) == (text, {})


def test_a_realistic_message_with_everything() -> None:
    text = ("Hi, ich bin Erika (erika@example.de, Tel. +49 171 2345678). Bitte die Erstattung für Bestellung "
            "#A-20240312 über 49,90 € vom 12.03.2024 auf DE89 3704 0044 0532 0130 00 überweisen, nicht auf "
            "die Karte 4111 1111 1111 1111. Rückfragen gern an erika@example.de oder 030 12345678.")
    redacted, mapping = redact(text)
    assert redacted == ("Hi, ich bin Erika ([EMAIL_1], Tel. [PHONE_1]). Bitte die Erstattung für Bestellung "
                        "#A-20240312 über 49,90 € vom 12.03.2024 auf [IBAN_1] überweisen, nicht auf "
                        "die Karte [CARD_1]. Rückfragen gern an [EMAIL_1] oder [PHONE_2].")
    assert set(mapping) == {"[EMAIL_1]", "[PHONE_1]", "[PHONE_2]", "[IBAN_1]", "[CARD_1]"}
    assert restore(redacted, mapping) == text
    # What the model answers with placeholders is restored for an admin, too.
    assert restore("Ich schreibe an [EMAIL_1].", mapping) == "Ich schreibe an erika@example.de."


def test_numbering_continues_across_a_conversation_and_typed_placeholders_are_left_alone() -> None:
    first, mapping = redact("Mail an a@example.com")
    second, mapping = redact("Neue: b@example.com, alte: a@example.com", mapping)
    assert (first, second) == ("Mail an [EMAIL_1]", "Neue: [EMAIL_2], alte: [EMAIL_1]")
    typed, own = redact("Was heißt [EMAIL_1]? Schreib an c@example.com")
    assert typed == "Was heißt [EMAIL_1]? Schreib an [EMAIL_2]"
    assert own == {"[EMAIL_2]": "c@example.com"}
    assert restore(typed, own) == "Was heißt [EMAIL_1]? Schreib an c@example.com"
    assert restore("[PHONE_9] unbekannt", own) == "[PHONE_9] unbekannt"


def test_a_conversation_redacted_again_gives_the_same_placeholders() -> None:
    turns = ["Ich bin a@example.com", "Und 0171 1234567", "Nochmal: a@example.com"]
    redacted, mapping = redact_all(turns)
    assert redacted == ["Ich bin [EMAIL_1]", "Und [PHONE_1]", "Nochmal: [EMAIL_1]"]
    assert redact_all(turns) == (redacted, mapping)
    assert restore("Antwort an [EMAIL_1] und [PHONE_1]", mapping) == "Antwort an a@example.com und 0171 1234567"


def test_kinds_can_be_chosen_and_empty_text_is_fine() -> None:
    text = "a@example.com, 0171 1234567"
    assert redact(text, kinds=["PHONE"]) == ("a@example.com, [PHONE_1]", {"[PHONE_1]": "0171 1234567"})
    assert redact("") == ("", {})
    assert restore("", {}) == ""


def test_checksums() -> None:
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
    assert not iban_valid("DE89 3704 0044 0532 0130")   # wrong length for DE
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


@pytest.mark.parametrize("text", ["a" * 8000, "a@" + "a" * 8000 + "!", "a@" + "a." * 4000, "1 " * 4000,
                                  "(0" * 4000, "DE89 " * 1600, "a@" + "a-" * 4000, "+4 " * 2600])
def test_hostile_input_of_the_largest_message_size_is_quick(text: str) -> None:
    import time

    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 0.5  # no catastrophic backtracking in the patterns
