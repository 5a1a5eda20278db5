"""The request and response models of /api/sources; the `kind` choices come from the registry."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.knowledge import kind_names, registry

if TYPE_CHECKING:
    KindName = str
else:  # a Literal of the registered kinds (files come as multipart): a bad kind is the usual literal_error
    KindName = Literal[kind_names(exclude_input="file")]


def _kinds_doc() -> str:
    described = " ".join(f"{k.name}: {k.summary}" for k in registry().values() if k.input != "file")
    return (f"{described} Files: send multipart/form-data with `file`, `assistant_id` and optional `title`, "
            "`language`.")


class CrawlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=10_000, description="Most pages a site, sitemap or feed sync indexes")
    max_depth: int = Field(default=3, ge=0, le=20, description="Link depth from the start page (site)")
    include_paths: list[str] = Field(default_factory=list, max_length=50,
                                     description="RE2 regexes searched in the URL path; when given, one must match")
    exclude_paths: list[str] = Field(default_factory=list, max_length=50,
                                     description="RE2 regexes searched in the URL path; a match is skipped")


class SourceCreate(CrawlSettings):
    assistant_id: str = Field(min_length=1, max_length=100)
    kind: KindName = Field(description=_kinds_doc())
    url: str | None = Field(default=None, max_length=2048)
    title: str | None = Field(default=None, max_length=300)
    content: str | None = Field(default=None, description="The text of a text or markdown source")
    language: str | None = Field(default=None, max_length=64,
                                 description="Full-text language (english, german, or an ISO code); default "
                                             "'auto': each page's language is detected")
    sync_interval_hours: int | None = Field(default=None, ge=1, le=8760, description="Re-sync every N hours")


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=300)
    limit: int | None = Field(default=None, ge=1, le=10_000)
    max_depth: int | None = Field(default=None, ge=0, le=20)
    include_paths: list[str] | None = Field(default=None, max_length=50)
    exclude_paths: list[str] | None = Field(default=None, max_length=50)
    sync_interval_hours: int | None = Field(default=None, ge=1, le=8760, description="null stops scheduled syncs")


class FailedPage(BaseModel):
    url: str
    error: str | None


class SourcePublic(BaseModel):
    id: str
    assistant_id: str
    kind: str
    url: str | None
    title: str | None
    language: str = Field(description="The text search configuration asked for, or 'auto' (detected per page)")
    languages: list[str] = Field(description="The text search configurations its indexed pages use")
    status: Literal["queued", "crawling", "indexing", "ready", "failed"]
    pages_found: int
    pages_done: int
    pages_failed: int
    pages_kept: int = Field(description="Pages the latest sync could not read (or did not reach because it was cut "
                                        "short) whose earlier content stays searchable")
    pages_removed: int = Field(description="Pages the latest sync removed because it proved them gone (404/410, or "
                                           "missing from a sitemap or crawl it read completely)")
    chunks_count: int
    embeddings: str = Field(description="pending, ready, or keyword_only when no embeddings API is configured")
    error: str | None
    config: dict[str, Any]
    sync_interval_hours: int | None
    last_synced_at: datetime | None
    next_sync_at: datetime | None
    created_at: datetime
    updated_at: datetime
    failed_pages: list[FailedPage] = Field(default_factory=list, description="The latest failed pages of this sync")

    @classmethod
    def of(cls, row: dict[str, Any]) -> SourcePublic:
        return cls(**{k: v for k, v in row.items() if k in cls.model_fields})


class SourcesPublic(BaseModel):
    data: list[SourcePublic]
    count: int
    next_cursor: str | None = None


class PagePublic(BaseModel):
    id: str
    url: str
    title: str | None
    status: Literal["pending", "ready", "failed"]
    error: str | None
    attempts: int
    chunks: int
    updated_at: datetime


class PagesPublic(BaseModel):
    data: list[PagePublic]
    count: int
    next_cursor: str | None = None


class SourceDeleted(BaseModel):
    id: str
    deleted: bool
    documents: int
    chunks: int


class KindPublic(BaseModel):
    name: str
    summary: str
    input: Literal["url", "content", "file"] = Field(description="What adding one sends: url, content (and a "
                                                                 "title), or a file (multipart/form-data)")
    web: bool = Field(description="Pages are web pages: cited by URL, re-syncable on a schedule")
    settings: list[str] = Field(description="The crawl settings that apply (limit, max_depth, include_paths, ...)")


class KindsPublic(BaseModel):
    data: list[KindPublic]
    count: int
