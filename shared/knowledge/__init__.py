"""Source kinds: the registry of what an assistant's knowledge can be made of (a page, a site, a sitemap, a feed,
pasted text, a file).

Each kind is one `SourceKind` declared in one module listed in MODULES; everything else reads the registry:
the route's `kind` schema, the `source_kinds` table the sources' foreign key points at (filled by `db migrate`),
validation when a source is added or changed, the `crawl_source` job (how a sync starts), the page job (how a
page is fetched), the resync sweeper, and the console's form (GET /api/sources/kinds).
Adding a kind = its module + its name in MODULES (+ its tests and a line of docs).
The kind modules import their heavy parts inside functions.

The knowledge group also holds crawling and parsing (crawl/), chunking, embeddings, the vector stores
(vectors/), BM25 term statistics and retrieval, the one door the dialog side reads knowledge through.

May import: core, i18n, llm, workspace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import psycopg

    from shared.core.db import Row
    from shared.knowledge.crawl import Page

MODULES = ("web", "inline", "feed")

Input = Literal["url", "content", "file"]
CRAWL_SETTINGS = ("limit", "max_depth", "include_paths", "exclude_paths")
DEFAULT_PAGE_LIMIT = 50


@dataclass(frozen=True)
class SourceKind:
    """One kind of source and how each step of its sync works.

    name: stored in sources.kind. summary: one line for the API docs and the console.
    input: what adding one sends: a `url`, pasted `content` (and a title), or a `file` (multipart only).
    web: its pages are web pages (titled and cited by their own title and URL, re-syncable on a schedule).
    settings: the crawl settings (CRAWL_SETTINGS) that apply to it; others are not stored.
    link_crawl: pages are found by following links, so a page failing for a passing reason may hide others
        (the sync then counts as incomplete and removes nothing it did not reach).
    single_page: the source is one page (the page limit is 1, whatever `limit` says).
    start: the `crawl_source` job body: (conn, source, generation) -> result; registers and queues the pages.
        Raises CrawlError when the source cannot be read (retried while `retryable`).
    fetch: url -> Page for the page jobs; None when the pages are stored with the source (start indexes them),
        in which case a stalled sync is resumed by running `start` again.
    """

    name: str
    summary: str
    input: Input
    start: Callable[[psycopg.Connection[Row], Row, int], dict[str, Any]]
    fetch: Callable[[str], Page] | None = None
    web: bool = True
    settings: tuple[str, ...] = ()
    link_crawl: bool = False
    single_page: bool = False

    def page_limit(self, config: dict[str, Any]) -> int:
        if self.single_page or "limit" not in self.settings:
            return 1
        return int(config.get("limit") or DEFAULT_PAGE_LIMIT)

    def public(self) -> dict[str, Any]:
        """What the console needs to build its form."""
        return {"name": self.name, "summary": self.summary, "input": self.input, "web": self.web,
                "settings": list(self.settings)}


@cache
def registry() -> dict[str, SourceKind]:
    kinds: dict[str, SourceKind] = {}
    for module in MODULES:
        for kind in import_module(f"{__name__}.{module}").KINDS:
            if kind.name in kinds:
                raise RuntimeError(f"source kind {kind.name!r} is declared twice")
            kinds[kind.name] = kind
    return kinds


def source_kind(name: str) -> SourceKind:
    """The kind named `name`; KeyError for a name no module declares."""
    return registry()[name]


def kind_names(*, input: Input | None = None, exclude_input: Input | None = None) -> tuple[str, ...]:
    return tuple(k.name for k in registry().values()
                 if (input is None or k.input == input) and k.input != exclude_input)


def web_kinds() -> tuple[str, ...]:
    return tuple(k.name for k in registry().values() if k.web)
