"""Heading-aware markdown chunking: token-sized pieces with overlap, each keeping its heading path.

Sections follow the markdown headings (ignoring '#' lines inside code fences). A section that fits is
one chunk; small neighbouring sections (siblings, or a parent and its first child) are packed together
so a FAQ page does not become forty tiny chunks; a long section is split at paragraphs, then sentences,
then words, and each piece repeats the end of the previous one (the overlap) so no sentence loses its
context at a boundary.

Tokens are estimated at 4 characters each (OpenAI's rule of thumb for English text). tiktoken would be
exact, but it downloads its encoding files on first use, which an offline machine cannot do and a cold
serverless function should not wait for; the estimate only sizes chunks, nothing is billed by it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

CHUNKER_VERSION = "1"   # part of every hash: changing the rules re-chunks and re-embeds on the next sync
CHARS_PER_TOKEN = 4
MAX_TOKENS = 400
OVERLAP_TOKENS = 50

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
FENCE = re.compile(r"^[ \t]*(```|~~~)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MARKUP = re.compile(r"\[([^\]]*)\]\([^)]*\)|[*_`]+")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    heading_path: str   # "Pricing > Refunds"
    text: str
    token_count: int
    content_hash: str


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def sections(markdown: str) -> list[tuple[list[str], str]]:
    """(heading path, body) for each section with text, in document order."""
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    out: list[tuple[list[str], str]] = []
    fence: str | None = None
    for line in markdown.replace("\r\n", "\n").split("\n"):
        marker = FENCE.match(line)
        if marker and (fence is None or marker.group(1) == fence):
            fence = marker.group(1) if fence is None else None
        elif fence is None and (heading := HEADING.match(line)):
            out.append(([text for _, text in path], "\n".join(lines).strip()))
            lines = []
            level = len(heading.group(1))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, " ".join(MARKUP.sub(r"\1", heading.group(2)).split())))
            continue
        lines.append(line)
    out.append(([text for _, text in path], "\n".join(lines).strip()))
    return [(p, body) for p, body in out if body]


def chunk_markdown(markdown: str, title: str = "", *, max_tokens: int = MAX_TOKENS,
                   overlap_tokens: int = OVERLAP_TOKENS) -> list[Chunk]:
    """The chunks of one document, numbered from 0. Same input, same chunks (and hashes)."""
    max_chars = max_tokens * CHARS_PER_TOKEN
    small = max_chars // 4
    pieces: list[tuple[list[str], str]] = []
    group: list[tuple[list[str], str]] = []

    def flush() -> None:
        if group:
            pieces.append(_merge(group))
            group.clear()

    for path, body in sections(markdown):
        if len(body) > max_chars:
            flush()
            pieces.extend((path, text) for text in split_long(body, max_chars, overlap_tokens * CHARS_PER_TOKEN))
            continue
        if group:
            paths = [p for p, _ in group] + [path]
            size = sum(len(b) + 40 for _, b in group) + len(body)
            group_small = sum(len(b) for _, b in group) < small or len(body) < small
            if not (group_small and size <= max_chars and len(_common(paths)) >= max(map(len, paths)) - 1):
                flush()
        group.append((path, body))
    flush()
    chunks = []
    for ordinal, (path, text) in enumerate(pieces):
        heading_path = " > ".join(path)
        digest = hashlib.sha256(f"{CHUNKER_VERSION}\0{title}\0{heading_path}\0{text}".encode()).hexdigest()[:32]
        chunks.append(Chunk(ordinal, heading_path, text, estimate_tokens(text), digest))
    return chunks


def _common(paths: list[list[str]]) -> list[str]:
    prefix = list(paths[0])
    for path in paths[1:]:
        size = 0
        while size < min(len(prefix), len(path)) and prefix[size] == path[size]:
            size += 1
        prefix = prefix[:size]
    return prefix


def _merge(group: list[tuple[list[str], str]]) -> tuple[list[str], str]:
    """Sections packed into one chunk under their common path; deeper headings stay in the text."""
    prefix = _common([p for p, _ in group])
    parts = []
    for path, body in group:
        extra = path[len(prefix):]
        parts.append(("#" * min(6, len(path)) + " " + " > ".join(extra) + "\n" + body) if extra else body)
    return prefix, "\n\n".join(parts)


def split_long(body: str, max_chars: int, overlap_chars: int) -> list[str]:
    """A long section as pieces of at most `max_chars`, each starting with the previous one's last words."""
    units: list[tuple[str, str]] = []  # (joiner before it, text)
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            units.append(("\n\n", paragraph))
            continue
        joiner = "\n\n"
        for sentence in SENTENCE_END.split(paragraph):
            for piece in _hard_wrap(sentence, max_chars):
                units.append((joiner, piece))
                joiner = " "
    pieces: list[str] = []
    current: list[tuple[str, str]] = []
    for unit in units:
        if current and _length(current + [unit]) > max_chars:
            pieces.append(_join(current))
            current = _tail(current, overlap_chars)
            while current and _length(current + [unit]) > max_chars:
                current.pop(0)
        current.append(unit)
    if current:
        pieces.append(_join(current))
    return pieces


def _hard_wrap(text: str, max_chars: int) -> list[str]:
    """A sentence longer than a chunk, cut at spaces (or anywhere, for one endless word)."""
    if len(text) <= max_chars:
        return [text]
    out, line = [], ""
    for word in text.split():
        while len(word) > max_chars:
            if line:
                out.append(line)
                line = ""
            out.append(word[:max_chars])
            word = word[max_chars:]
        if line and len(line) + 1 + len(word) > max_chars:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return out


def _length(units: list[tuple[str, str]]) -> int:
    return sum(len(text) for _, text in units) + sum(len(j) for j, _ in units[1:])


def _join(units: list[tuple[str, str]]) -> str:
    return units[0][1] + "".join(joiner + text for joiner, text in units[1:])


def _tail(units: list[tuple[str, str]], overlap_chars: int) -> list[tuple[str, str]]:
    """The last units that fit in the overlap; else the last words of the last unit."""
    if overlap_chars <= 0 or not units:
        return []
    tail: list[tuple[str, str]] = []
    for unit in reversed(units):
        if _length([unit] + tail) > overlap_chars:
            break
        tail.insert(0, unit)
    if tail:
        return tail
    text = units[-1][1][-overlap_chars:]
    cut = text.find(" ")
    return [("\n\n", text[cut + 1:] if 0 <= cut < len(text) - 1 else text)]
