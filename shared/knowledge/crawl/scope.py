"""Which URLs a site crawl may visit: same host, under the start path, include/exclude patterns, no files.

Patterns are regular expressions searched in the URL path (and query), the way Firecrawl's
includePaths/excludePaths work, so a source behaves the same with or without a Firecrawl key. They run on
RE2 (google-re2), which matches in time linear in the path: the crawled site chooses the paths, and a
backtracking engine lets `^/(a+)+$` spend seconds on one link. RE2 syntax is Python's without lookaround
and backreferences (patterns using them are refused); `\\d`, `\\w`, `\\s` and `\\b` match ASCII only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import re2

# Links to these are never pages worth indexing (PDFs are, so .pdf is not here).
SKIP_EXTENSIONS = frozenset([
    ".jpg", ".jpeg", ".png", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff", ".avif", ".css", ".js",
    ".mjs", ".json", ".xml", ".rss", ".atom", ".zip", ".gz", ".tgz", ".tar", ".rar", ".7z", ".exe", ".dmg",
    ".pkg", ".msi", ".iso", ".mp3", ".mp4", ".m4a", ".wav", ".ogg", ".webm", ".avi", ".mov", ".woff", ".woff2",
    ".ttf", ".eot", ".otf", ".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".csv", ".apk"])
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 300


def normalize_url(url: str) -> str:
    """One spelling per page: lower-case scheme and host, no default port, no fragment, '/' for no path."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the caller's 422, not a line on stderr
    return options


def compile_patterns(patterns: list[str], field_name: str) -> list[Any]:
    """RE2 regexes from user input; ValueError naming the field and the pattern when RE2 refuses one."""
    if len(patterns) > MAX_PATTERNS:
        raise ValueError(f"{field_name}: at most {MAX_PATTERNS} patterns")
    compiled = []
    for pattern in patterns:
        if not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"{field_name}: patterns must be 1 to {MAX_PATTERN_CHARS} characters")
        try:
            compiled.append(re2.compile(pattern, _options()))
        except (re2.error, UnicodeError, TypeError) as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ValueError(f"{field_name}: {pattern!r} is not a regular expression RE2 accepts ({reason}); "
                             f"RE2 has no lookaround or backreferences") from None
    return compiled


def _base_path(path: str) -> str:
    path = path or "/"
    last = path.rsplit("/", 1)[-1]
    if "." in last:  # /docs/index.html crawls /docs/
        path = path[: len(path) - len(last)]
    return path.rstrip("/")


@dataclass
class Scope:
    start_url: str
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(normalize_url(self.start_url))
        self._netloc = parts.netloc
        self._base = _base_path(parts.path)
        self._include = compile_patterns(self.include, "include_paths")
        self._exclude = compile_patterns(self.exclude, "exclude_paths")

    def allows(self, url: str) -> bool:
        """True when `url` (normalised) belongs to this crawl."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.netloc != self._netloc:
            return False
        path = parts.path or "/"
        if self._base and path != self._base and not path.startswith(self._base + "/"):
            return False
        last = path.rsplit("/", 1)[-1].lower()
        if "." in last and "." + last.rsplit(".", 1)[-1] in SKIP_EXTENSIONS:
            return False
        return self.matches(url)

    def matches(self, url: str) -> bool:
        """Include/exclude patterns only (sitemaps list pages anywhere on the host)."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self._include and not any(p.search(target) for p in self._include):
            return False
        return not any(p.search(target) for p in self._exclude)
