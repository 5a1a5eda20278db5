"""The `ingest_pages` job: pages of one sync -> fetch (or the markdown Firecrawl sent) -> chunks and vectors.

A job carries many pages (`pages`; a message queued by an older deploy names one `url`) and works through
them in waves (shared/knowledge/crawl/ingest.py). Failures are recorded on each page; while a page has attempts left the
job raises after the others are written, so QStash retries it; after the last attempt the page is marked failed
and the job succeeds, so the sync can finish. A page already done in this sync is skipped.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.core.db import connect
from shared.core.jobs import JobPayload
from shared.knowledge.crawl import Page
from shared.knowledge.crawl.ingest import ingest_pages
from shared.knowledge.crawl.pipeline import PageRef, load_source

MAX_PAGES = 1000  # far above INGEST_PAGES_PER_JOB's default: a payload past it is not one we queued


class PageItem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str = Field(min_length=1)
    depth: int = Field(0, ge=0)
    follow: bool = False
    markdown: str | None = None  # the page as Firecrawl sent it (small pages only): nothing to fetch
    title: str | None = None

    def ref(self) -> PageRef:
        page = None if self.markdown is None else Page(url=self.url, title=self.title or "", markdown=self.markdown)
        return PageRef(self.url, self.depth, self.follow, page)


class Payload(JobPayload):
    source_id: str
    generation: int
    # One page, as messages queued before pages were batched name it.
    url: str | None = None
    depth: int = Field(0, ge=0)
    follow: bool = False
    markdown: str | None = None
    title: str | None = None
    pages: list[PageItem] = Field(default_factory=list, max_length=MAX_PAGES, validate_default=True)

    @field_validator("pages")
    @classmethod
    def _some_page(cls, pages: list[PageItem], info: ValidationInfo) -> list[PageItem]:
        if not pages and not info.data.get("url"):
            raise ValueError("give the pages to ingest (or url, for one page)")
        return pages

    def refs(self) -> list[PageRef]:
        refs = [item.ref() for item in self.pages]
        if self.url:
            refs.append(PageItem(url=self.url, depth=self.depth, follow=self.follow, markdown=self.markdown,
                                 title=self.title).ref())
        return refs


def run(payload: Payload) -> dict[str, Any]:
    with connect() as conn:
        source = load_source(conn, payload.source_id)
    if source is None or source["sync_generation"] != payload.generation:
        return {"skipped": "the source was deleted or resynced"}
    # A connection per database step, none while pages are fetched and embedded (shared.core.db.Connections).
    return ingest_pages(connect, source, payload.generation, payload.refs())
