"""Which language a text is in: each page at ingest (its full-text configuration, so German pages get German
stemming) and each chat message (the language the answer and the fixed phrases are written in).

The detector is CLD2 (pycld2): a C extension with its tables compiled in, so importing it costs ~2 ms and
there is no model file to load; a question takes ~10-25 µs, a 6 kB page ~150-250 µs. py3langid was a little
more accurate on short texts but imports numpy (~170-500 ms) and decompresses its model on first use
(~0.5-2 s), once per cold worker, which the chat path can't afford; cld3 misread short English questions.
bench/language_detect.py prints the figures. pycld2 is imported on first use only, so no api/ module pays
for it at import time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

AUTO = "auto"                 # a source or template that does not name a language
UNKNOWN_CONFIG = "simple"     # pages in a language we can't tell or PostgreSQL can't stem
DEFAULT_ANSWER_LANGUAGE = "en"
MAX_DETECT_CHARS = 10_000     # a page's first prose says its language; the rest only costs time
HISTORY_MESSAGES = 3          # a too-short message is judged together with the user's last few

# ISO 639-1 codes -> PostgreSQL text search configurations (those a stock PostgreSQL 16 ships).
PG_CONFIGS = {"ar": "arabic", "ca": "catalan", "da": "danish", "de": "german", "el": "greek", "en": "english",
              "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french", "ga": "irish", "hi": "hindi",
              "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
              "ne": "nepali", "nl": "dutch", "no": "norwegian", "nb": "norwegian", "pt": "portuguese",
              "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish",
              "yi": "yiddish"}

# Code and links say nothing about a page's language (and look English to any detector).
# Bounded repeats: a page can't make the scan quadratic with a long line of "<" or "](".
_NOT_PROSE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]{0,300}`|\]\([^()\[\]\s]{0,500}\)|https?://\S+|"
                        r"<[^<>\n]{0,300}>", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # CLD2 refuses control characters
_LETTER = re.compile(r"[^\W\d_]")


def detect(text: str) -> str | None:
    """The ISO 639-1 code of `text`'s language, or None when CLD2 can't tell (too little text, unknown)."""
    prose = _CONTROL.sub(" ", _NOT_PROSE.sub(" ", text[: MAX_DETECT_CHARS * 2]))[:MAX_DETECT_CHARS]
    if not _LETTER.search(prose):
        return None
    import pycld2  # first use only: the ingest path, or the first chat turn of a worker (~2 ms)

    try:
        _, _, found = pycld2.detect(prose, isPlainText=True)
    except (pycld2.error, UnicodeError):  # surrogates or noncharacters: judge the printable rest
        try:
            _, _, found = pycld2.detect("".join(c for c in prose if c.isprintable() or c.isspace()),
                                        isPlainText=True)
        except (pycld2.error, UnicodeError):
            return None
    code = str(found[0][1]).lower()
    return None if code in ("un", "xxx", "") else code.split("-")[0]


def text_search_config(title: str, markdown: str) -> str:
    """The PostgreSQL text search configuration for a page: its detected language's, else 'simple'.

    'simple' (lower-cased words, no stemming, no stop words) rather than 'english' for a page we can't place:
    exact words still match in every language, whereas English stemming and stop words would mangle or drop
    words of another language (German "was", "will", "also" are not English stop words).
    """
    code = detect(f"{title}\n\n{markdown}")
    return PG_CONFIGS.get(code, UNKNOWN_CONFIG) if code else UNKNOWN_CONFIG


def message_language(message: str, earlier: Iterable[str] = ()) -> str | None:
    """The language of a user's message (ISO 639-1), or None. A message too short to tell ("ok?") is
    judged together with the user's previous few."""
    found = detect(message)
    if found is None:
        recent = [m for m in earlier if m][-HISTORY_MESSAGES:]
        found = detect(" ".join([*recent, message])) if recent else None
    return found


def answer_language(pinned: str, detected: str | None) -> str:
    """The language to answer in: the template's when it pins one, else the user's; English when unknown."""
    if pinned and pinned.strip().lower() != AUTO:
        return pinned
    return detected or DEFAULT_ANSWER_LANGUAGE
