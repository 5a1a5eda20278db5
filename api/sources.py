"""/api/sources: an assistant's knowledge. Add a URL, a site to crawl, a sitemap, pasted text or markdown,
or a file (multipart); watch progress and each failed page; resync; delete with documents, chunks and vectors."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Scope

from shared.audit import record
from shared.auth import AdminKey, Db
from shared.crawl import CrawlError
from shared.crawl.pipeline import start_sync
from shared.crawl.sources import (
    PUBLIC_COLUMNS,
    create_source,
    delete_source,
    get_source,
    update_source,
)
from shared.db import fetch_all, fetch_one
from shared.errors import (
    AppError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from shared.http import create_app, settings_body_limit
from shared.pagination import MAX_LIMIT, decode_cursor, page
from shared.ratelimit import check_ingest
from shared.settings import get_settings

MULTIPART_SLACK = 64_000      # form fields and boundaries around the file


def _body_limit(scope: Scope) -> int:
    """Adding a source (a file, or pasted text) may send up to MAX_UPLOAD_BYTES; every other route MAX_BODY_BYTES."""
    if scope["method"] == "POST" and scope["path"].rstrip("/") == "/api/sources":
        return get_settings().max_upload_bytes + MULTIPART_SLACK
    return settings_body_limit()


app = create_app("sources", description="Knowledge sources of an assistant and their ingestion progress.",
                 max_body_bytes=_body_limit)


class CrawlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=10_000, description="Most pages a site or sitemap sync indexes")
    max_depth: int = Field(default=3, ge=0, le=20, description="Link depth from the start page (site)")
    include_paths: list[str] = Field(default_factory=list, max_length=50,
                                     description="RE2 regexes searched in the URL path; when given, one must match")
    exclude_paths: list[str] = Field(default_factory=list, max_length=50,
                                     description="RE2 regexes searched in the URL path; a match is skipped")


class SourceCreate(CrawlSettings):
    assistant_id: str = Field(min_length=1, max_length=100)
    kind: Literal["url", "site", "sitemap", "text", "markdown"] = Field(
        description="url: one page; site: crawl from url; sitemap: pages listed at url; text/markdown: content. "
                    "Files: send multipart/form-data with `file`, `assistant_id` and optional `title`, `language`.")
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


def _public(row: dict[str, Any]) -> SourcePublic:
    return SourcePublic(**{k: v for k, v in row.items() if k in SourcePublic.model_fields})


@app.post("/api/sources", status_code=202, response_model=SourcePublic,
          summary="Add a source (JSON, or multipart/form-data for a file); its first sync is queued",
          openapi_extra={"requestBody": {"content": {
              "application/json": {"schema": SourceCreate.model_json_schema()},
              "multipart/form-data": {"schema": {"type": "object", "required": ["assistant_id", "file"], "properties": {
                  "assistant_id": {"type": "string"}, "file": {"type": "string", "format": "binary"},
                  "title": {"type": "string"}, "language": {"type": "string"}}}}}}})
async def create(request: Request, principal: AdminKey, conn: Db) -> SourcePublic:
    limit = get_settings().max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise _too_large(limit, int(declared))
    content_type = request.headers.get("content-type", "").lower()
    is_upload = content_type.startswith("multipart/form-data")
    # Counted before anything is parsed or stored: over the limit, nothing happens (429).
    await run_in_threadpool(check_ingest, principal.workspace_id, "upload" if is_upload else "ingest")
    if is_upload:
        values = await _upload_values(request, limit)
    elif content_type.startswith("application/x-www-form-urlencoded"):
        raise Unprocessable("Files are uploaded as multipart/form-data with a field named 'file'; other sources "
                            "are JSON.", code="file_missing",
                            details=[{"field": "file", "problem": "missing", "type": "missing"}])
    else:
        raw = await request.body()
        if len(raw) > limit:
            raise _too_large(limit, len(raw))
        try:
            body = SourceCreate.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            # The same shape FastAPI gives a typed body: locations start at "body".
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                          for e in exc.errors(include_url=False)]) from None
        values = body.model_dump(exclude={"limit", "max_depth", "include_paths", "exclude_paths"})
        values["config"] = body.model_dump(include={"limit", "max_depth", "include_paths", "exclude_paths"})
    row = await run_in_threadpool(create_source, conn, principal.workspace_id, values)
    await run_in_threadpool(record, conn, principal, "source.created", row["id"], {"kind": row["kind"]})
    return _public(row)


def _too_large(limit: int, size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload is {size} bytes; the limit is {limit} bytes (MAX_UPLOAD_BYTES).",
                           details={"limit_bytes": limit, "size_bytes": size})


async def _upload_values(request: Request, limit: int) -> dict[str, Any]:
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise Unprocessable("Send the file in a multipart field named 'file'.", code="file_missing",
                            details=[{"field": "file", "problem": "missing", "type": "missing"}])
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit, upload.size or len(data))
    if not data:
        raise Unprocessable("The file is empty.", code="empty_file")
    from shared.crawl.extract import parse_file

    try:  # PDF, Word and HTML are parsed in a bounded child process (shared.crawl.sandbox)
        kind, title, markdown = await run_in_threadpool(parse_file, upload.filename, data)
    except CrawlError as exc:
        raise _parse_refusal(exc, upload.filename) from None
    text = {name: str(form.get(name) or "").strip() for name in ("assistant_id", "title", "language")}
    if not text["assistant_id"]:
        raise Unprocessable("Send the assistant_id form field with the file.", code="validation_error",
                            details=[{"field": "assistant_id", "problem": "missing", "type": "missing"}])
    return {"assistant_id": text["assistant_id"], "kind": "file", "title": text["title"][:300] or title,
            "language": text["language"] or None,
            "config": {"content": markdown, "file_name": upload.filename[:300], "file_type": kind,
                       "file_size": len(data)}}


def _parse_refusal(exc: CrawlError, file_name: str) -> AppError:
    """415 unsupported type, 413 too large once unpacked, 503 parsers busy, else 422; a parse bound's
    setting and value are in the details."""
    from shared.crawl.sandbox import TOO_LARGE_CODES, ParseLimitError

    details: dict[str, Any] = {"file_name": file_name}
    if isinstance(exc, ParseLimitError):
        details.update(setting=exc.setting, limit=exc.limit)
    if exc.code == "unsupported_file_type":
        return UnsupportedMediaType(exc.message, code=exc.code, details=details)
    if exc.code in TOO_LARGE_CODES:
        return PayloadTooLarge(exc.message, code=exc.code, details=details)
    if exc.retryable:
        return ServiceUnavailable(exc.message, code=exc.code, details=details, headers={"Retry-After": "30"})
    return Unprocessable(exc.message, code=exc.code, details=details)


@app.get("/api/sources", response_model=SourcesPublic, summary="List sources, newest first")
def list_sources(principal: AdminKey, conn: Db, assistant_id: str | None = None,
                 limit: int = Query(default=50, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> SourcesPublic:
    if assistant_id and not fetch_one(conn, "SELECT 1 AS ok FROM assistants WHERE id = %s AND workspace_id = %s",
                                      (assistant_id, principal.workspace_id)):
        raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
    after = decode_cursor(cursor, "time", "text") if cursor else None
    rows = fetch_all(conn, f"""
        SELECT {PUBLIC_COLUMNS}, created_at::text AS sort_at FROM sources
        WHERE workspace_id = %(ws)s AND (%(asst)s::text IS NULL OR assistant_id = %(asst)s)
          AND (%(at)s::timestamptz IS NULL OR (created_at, id) < (%(at)s::timestamptz, %(id)s))
        ORDER BY created_at DESC, id DESC LIMIT %(n)s""",
        {"ws": principal.workspace_id, "asst": assistant_id, "at": after[0] if after else None,
         "id": after[1] if after else None, "n": limit + 1})
    rows, next_cursor = page(rows, limit, "sort_at", "id")
    return SourcesPublic(data=[_public(r) for r in rows], count=len(rows), next_cursor=next_cursor)


@app.get("/api/sources/{source_id}", response_model=SourcePublic, summary="A source with progress and failed pages")
def read(source_id: str, principal: AdminKey, conn: Db) -> SourcePublic:
    return _public(get_source(conn, principal.workspace_id, source_id))


@app.patch("/api/sources/{source_id}", response_model=SourcePublic,
           summary="Change title, schedule or crawl settings (used from the next sync)")
def update(source_id: str, body: SourceUpdate, principal: AdminKey, conn: Db) -> SourcePublic:
    row = update_source(conn, principal.workspace_id, source_id, body.model_dump(exclude_unset=True))
    record(conn, principal, "source.updated", source_id, body.model_dump(exclude_unset=True, exclude={"title"}))
    return _public(row)


@app.delete("/api/sources/{source_id}", response_model=SourceDeleted,
            summary="Delete a source with its documents, chunks and vectors")
def delete(source_id: str, principal: AdminKey, conn: Db) -> SourceDeleted:
    result = delete_source(conn, principal.workspace_id, source_id)
    record(conn, principal, "source.deleted", source_id, {"documents": result["documents"]})
    return SourceDeleted(**result)


@app.post("/api/sources/{source_id}/resync", status_code=202, response_model=SourcePublic,
          summary="Sync again: changed pages are re-embedded, pages proved gone removed, the rest kept")
def resync(source_id: str, principal: AdminKey, conn: Db) -> SourcePublic:
    check_ingest(principal.workspace_id, "ingest")
    if start_sync(conn, principal.workspace_id, source_id) is None:
        raise NotFound("No such source in this workspace.", code="source_not_found")
    record(conn, principal, "source.resynced", source_id)
    return _public(get_source(conn, principal.workspace_id, source_id))


@app.get("/api/sources/{source_id}/pages", response_model=PagesPublic,
         summary="The source's pages with status, attempts and error")
def pages(source_id: str, principal: AdminKey, conn: Db,
          status: Literal["pending", "ready", "failed"] | None = None,
          limit: int = Query(default=50, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> PagesPublic:
    get_source(conn, principal.workspace_id, source_id, failed_pages=0)
    after = decode_cursor(cursor, "text")[0] if cursor else None
    rows = fetch_all(conn, """
        SELECT d.id, d.url, d.title, d.status, d.error, d.attempts, d.updated_at,
               (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks
        FROM documents d
        WHERE d.source_id = %(src)s AND d.workspace_id = %(ws)s AND (%(st)s::text IS NULL OR d.status = %(st)s)
          AND (%(after)s::text IS NULL OR d.url > %(after)s)
        ORDER BY d.url LIMIT %(n)s""",
        {"src": source_id, "ws": principal.workspace_id, "st": status, "after": after, "n": limit + 1})
    rows, next_cursor = page(rows, limit, "url")
    return PagesPublic(data=[PagePublic(**r) for r in rows], count=len(rows), next_cursor=next_cursor)


lambda_handler = Mangum(app)
