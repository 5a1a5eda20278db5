"""PII redaction: e-mail addresses, phone numbers, IBANs and card numbers -> [EMAIL_1]-style placeholders.

`redact(text)` returns the text the model, the logs and the index may see plus the mapping that
`restore` uses to put the originals back (only for admins reading a transcript). Candidates are found
by pattern and then validated (IBAN mod-97 and length per country, Luhn plus a card-brand prefix for
cards, digit counts and no date shape for phones), so order numbers, dates and prices stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KINDS = ("EMAIL", "IBAN", "CARD", "PHONE")  # matching order: earlier kinds win overlapping text
PLACEHOLDER = re.compile(r"\[(EMAIL|IBAN|CARD|PHONE)_(\d+)\]")

EMAIL = re.compile(r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])")
CARD = re.compile(r"(?<![\w+.,/-])\d(?:[ -]?\d){12,18}(?![\w.,/-]?\d)")
PHONE = re.compile(r"(?<![\w+#/.,-])(?:\+|\(?0)[\d \-/()]{6,24}\d(?![\w])")
DATE_LIKE = re.compile(r"^\(?\d{1,4}[-/ ]\d{1,2}[-/ ]\d{2,4}\)?$")

# Lengths of IBANs by country (SWIFT IBAN registry) for the usual suspects; others: 15-34 characters.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}
# Card brands by leading digits (Visa 4, Mastercard 51-55 / 22-27, Amex 34/37, Diners 30/36/38,
# JCB 35, Discover / UnionPay / Maestro 6, Maestro 50/56-58); anything else is an order number.
CARD_PREFIX = re.compile(r"^(?:4|5[0-8]|2[2-7]|3[04-8]|6)")


def iban_valid(candidate: str) -> bool:
    """Country length (when known) and the ISO 7064 mod-97 check."""
    iban = candidate.replace(" ", "").upper()
    expected = IBAN_LENGTHS.get(iban[:2])
    if (expected and len(iban) != expected) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_valid(candidate: str) -> bool:
    separators = set(re.sub(r"\d", "", candidate))
    digits = re.sub(r"\D", "", candidate)
    return (len(separators) <= 1 and 13 <= len(digits) <= 19 and bool(CARD_PREFIX.match(digits))
            and luhn_valid(digits))


def phone_valid(candidate: str) -> bool:
    """International (+49 ..., 0049 ...) or German national (030 ..., 0171 ..., (089) ...) numbers."""
    digits = re.sub(r"\D", "", candidate)
    has_separators = not candidate.lstrip("+").isdigit()
    if candidate.count("(") != candidate.count(")") or DATE_LIKE.match(candidate):
        return False
    if candidate.startswith("+"):
        return 8 <= len(digits) <= 15
    if digits.startswith("00"):  # 0049 ...: only written with spaces; a bare 00... run is an order number
        return has_separators and 10 <= len(digits) <= 17 and digits[2] != "0"
    if not 9 <= len(digits) <= 13 or digits[1] == "0":
        return False
    # Without separators only the German mobile (015x-017x) and area-code shapes count.
    return has_separators or (bool(re.match(r"^0(?:1[5-7]|[2-9])", digits)) and len(digits) >= 10)


PATTERNS = {"EMAIL": (EMAIL, None), "IBAN": (IBAN, iban_valid), "CARD": (CARD, card_valid),
            "PHONE": (PHONE, phone_valid)}


def redact(text: str, mapping: dict[str, str] | None = None,
           kinds: Iterable[str] = KINDS) -> tuple[str, dict[str, str]]:
    """Replace PII in `text` with placeholders; returns (redacted text, {placeholder: original}).

    Pass the mapping of earlier messages of the same conversation to keep numbering going and to give a
    value seen before the same placeholder. Placeholders a user typed themselves are never reused.
    """
    mapping = dict(mapping or {})
    if not text:
        return text, mapping
    wanted = [k for k in KINDS if k in set(kinds)]
    spans: list[tuple[int, int, str | None]] = []  # kind None: looked like an IBAN, failed its check
    for kind in wanted:
        pattern, valid = PATTERNS[kind]
        for match in pattern.finditer(text):
            start, value = match.start(), match.group()
            if kind == "PHONE":  # the pattern may take a trailing ")" or separator: trim to the last digit
                value = value.rstrip(" -/")
            if any(start < s_end and s_start < start + len(value) for s_start, s_end, _ in spans):
                continue
            if valid is not None and not valid(value):
                # A mistyped IBAN is no card or phone number: keep its digits from matching those.
                if kind == "IBAN" and value[:2] in IBAN_LENGTHS:
                    spans.append((start, start + len(value), None))
                continue
            spans.append((start, start + len(value), kind))
    found = sorted((start, end, kind) for start, end, kind in spans if kind is not None)
    if not found:
        return text, mapping
    known = [(m.group(1), int(m.group(2)), p, v) for p, v in mapping.items() if (m := PLACEHOLDER.fullmatch(p))]
    by_value = {(kind, value): p for kind, _, p, value in known}
    counters = {k: max([n for kind, n, _, _ in known if kind == k], default=0) for k in KINDS}
    out, last = [], 0
    for start, end, kind in found:
        value = text[start:end]
        placeholder = by_value.get((kind, value))
        if placeholder is None:
            counters[kind] += 1
            while f"[{kind}_{counters[kind]}]" in text:  # the user typed this one: don't restore over it
                counters[kind] += 1
            placeholder = f"[{kind}_{counters[kind]}]"
            mapping[placeholder] = value
            by_value[(kind, value)] = placeholder
        out += [text[last:start], placeholder]
        last = end
    out.append(text[last:])
    return "".join(out), mapping


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put the originals back (placeholders not in `mapping` stay as they are); one pass, no re-expansion."""
    if not mapping or not text:
        return text
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
