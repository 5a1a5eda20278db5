"""/api/sources: an assistant's knowledge. Add a URL, a site to crawl, a sitemap, a feed, pasted text or markdown,
or a file (multipart); watch progress and each failed page; resync; delete with documents, chunks and vectors.
The kinds of source come from the registry in shared/knowledge (GET /api/sources/kinds lists them)."""

from __future__ import annotations

from typing import Literal

from fastapi import Query, Request
from mangum import Mangum
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from shared.core.errors import NotFound, Unprocessable
from shared.core.http import create_app, settings_body_limit
from shared.core.pagination import MAX_LIMIT, decode_cursor, page
from shared.core.request_body import validate
from shared.core.settings import get_settings
from shared.guard.audit import record
from shared.guard.deps import AdminKey, Db
from shared.guard.ratelimit import check_ingest
from shared.knowledge import CRAWL_SETTINGS, registry
from shared.knowledge.crawl import sources as store
from shared.knowledge.crawl.pipeline import start_sync
from shared.knowledge.crawl.sources import create_source, delete_source, get_source, update_source
from shared.knowledge.schemas import (
    KindPublic,
    KindsPublic,
    PagePublic,
    PagesPublic,
    SourceCreate,
    SourceDeleted,
    SourcePublic,
    SourcesPublic,
    SourceUpdate,
)
from shared.knowledge.uploads import MULTIPART_SLACK, too_large, upload_values


def _body_limit(scope: Scope) -> int:
    """Adding a source (a file, or pasted text) may send up to MAX_UPLOAD_BYTES; every other route MAX_BODY_BYTES."""
    if scope["method"] == "POST" and scope["path"].rstrip("/") == "/api/sources":
        return get_settings().max_upload_bytes + MULTIPART_SLACK
    return settings_body_limit()


app = create_app("sources", description="Knowledge sources of an assistant and their ingestion progress.",
                 max_body_bytes=_body_limit)
UPLOAD_SCHEMA = {"type": "object", "required": ["assistant_id", "file"], "properties": {
    "assistant_id": {"type": "string"}, "file": {"type": "string", "format": "binary"},
    "title": {"type": "string"}, "language": {"type": "string"}}}


@app.post("/api/sources", status_code=202, response_model=SourcePublic,
          summary="Add a source (JSON, or multipart/form-data for a file); its first sync is queued",
          openapi_extra={"requestBody": {"content": {
              "application/json": {"schema": SourceCreate.model_json_schema()},
              "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}})
async def create(request: Request, principal: AdminKey, conn: Db) -> SourcePublic:
    limit = get_settings().max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise too_large(limit, int(declared))
    content_type = request.headers.get("content-type", "").lower()
    is_upload = content_type.startswith("multipart/form-data")
    # Counted before anything is parsed or stored: over the limit, nothing happens (429).
    await run_in_threadpool(check_ingest, principal.workspace_id, "upload" if is_upload else "ingest")
    if is_upload:
        values = await upload_values(request, limit)
    elif content_type.startswith("application/x-www-form-urlencoded"):
        raise Unprocessable("Files are uploaded as multipart/form-data with a field named 'file'; other sources "
                            "are JSON.", code="file_missing",
                            details=[{"field": "file", "problem": "missing", "type": "missing"}])
    else:
        raw = await request.body()
        if len(raw) > limit:
            raise too_large(limit, len(raw))
        body = validate(SourceCreate, raw)
        values = body.model_dump(exclude=set(CRAWL_SETTINGS))
        values["config"] = body.model_dump(include=set(CRAWL_SETTINGS))
    row = await run_in_threadpool(create_source, conn, principal.workspace_id, values)
    await run_in_threadpool(record, conn, principal, "source.created", row["id"], {"kind": row["kind"]})
    return SourcePublic.of(row)


@app.get("/api/sources/kinds", response_model=KindsPublic, summary="The kinds of source that can be added")
def kinds(principal: AdminKey) -> KindsPublic:
    data = [KindPublic(**kind.public()) for kind in registry().values()]
    return KindsPublic(data=data, count=len(data))


@app.get("/api/sources", response_model=SourcesPublic, summary="List sources, newest first")
def list_sources(principal: AdminKey, conn: Db, assistant_id: str | None = None,
             limit: int = Query(default=50, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> SourcesPublic:
    after = decode_cursor(cursor, "time", "text") if cursor else None
    rows = store.list_sources(conn, principal.workspace_id, assistant_id, limit, after)
    rows, next_cursor = page(rows, limit, "sort_at", "id")
    return SourcesPublic(data=[SourcePublic.of(r) for r in rows], count=len(rows), next_cursor=next_cursor)


@app.get("/api/sources/{source_id}", response_model=SourcePublic, summary="A source with progress and failed pages")
def read(source_id: str, principal: AdminKey, conn: Db) -> SourcePublic:
    return SourcePublic.of(get_source(conn, principal.workspace_id, source_id))


@app.patch("/api/sources/{source_id}", response_model=SourcePublic,
           summary="Change title, schedule or crawl settings (used from the next sync)")
def update(source_id: str, body: SourceUpdate, principal: AdminKey, conn: Db) -> SourcePublic:
    row = update_source(conn, principal.workspace_id, source_id, body.model_dump(exclude_unset=True))
    record(conn, principal, "source.updated", source_id, body.model_dump(exclude_unset=True, exclude={"title"}))
    return SourcePublic.of(row)


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
    return SourcePublic.of(get_source(conn, principal.workspace_id, source_id))


@app.get("/api/sources/{source_id}/pages", response_model=PagesPublic,
         summary="The source's pages with status, attempts and error")
def pages(source_id: str, principal: AdminKey, conn: Db,
          status: Literal["pending", "ready", "failed"] | None = None,
          limit: int = Query(default=50, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> PagesPublic:
    after = decode_cursor(cursor, "text")[0] if cursor else None
    rows = store.list_pages(conn, principal.workspace_id, source_id, status, limit, after)
    rows, next_cursor = page(rows, limit, "url")
    return PagesPublic(data=[PagePublic(**r) for r in rows], count=len(rows), next_cursor=next_cursor)


lambda_handler = Mangum(app)
