"""Sources of knowledge: create (validated, SSRF-checked, first sync queued), read, update and delete."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.core.db import Row, fetch_all, fetch_one
from shared.core.errors import NotFound, ServiceUnavailable, Unprocessable
from shared.i18n.language import AUTO, PG_CONFIGS
from shared.knowledge import CRAWL_SETTINGS, source_kind, web_kinds
from shared.knowledge.crawl import CrawlError
from shared.knowledge.crawl.pipeline import publish_crawl, remove_chunks
from shared.knowledge.crawl.scope import Scope, normalize_url

# What the API shows: the stored content of text and file sources stays out of every response.
PUBLIC_COLUMNS = """id, assistant_id, kind, url, title, language, languages, status, pages_found, pages_done,
    pages_failed, pages_kept, pages_removed, chunks_count, embeddings, error, config - 'content' AS config,
    sync_interval_hours, sync_generation, last_synced_at, next_sync_at, created_at, updated_at"""


def field_error(field: str, message: str, code: str = "validation_error") -> Unprocessable:
    return Unprocessable(message, code=code, details=[{"field": field, "problem": message, "type": code}])


def resolve_language(conn: psycopg.Connection[Row], requested: str | None) -> str:
    """A PostgreSQL text search configuration (name or ISO code), or 'auto' when none is named: then each
    page's language is detected when it is indexed."""
    name = (requested or AUTO).strip().lower()
    if name == AUTO:
        return AUTO
    name = PG_CONFIGS.get(name, name)
    if fetch_one(conn, "SELECT 1 AS ok FROM pg_ts_config WHERE cfgname = %s", (name,)) is None:
        raise field_error("language", f"{requested!r} is not a language full-text search knows "
                                      f"(use e.g. english, german, french, an ISO code such as 'de', or 'auto').")
    return name


def check_source_url(url: str | None) -> str:
    """A normalised http(s) URL that passes the SSRF guard, or a 422 naming the problem."""
    if not url:
        raise field_error("url", "This kind of source needs a url.")
    from shared.knowledge.crawl.ssrf import check_url  # loads httpx/httpcore: only routes that add a URL need them

    try:
        check_url(url)
    except CrawlError as exc:
        raise field_error("url", exc.message, exc.code) from None
    return normalize_url(url)


def check_patterns(url: str, config: dict[str, Any]) -> None:
    try:
        Scope(url, config.get("include_paths") or [], config.get("exclude_paths") or [])
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise field_error(field, str(exc)) from None


def create_source(conn: psycopg.Connection[Row], workspace_id: str, values: dict[str, Any]) -> Row:
    """Store a new source (first sync = generation 1) and queue its `crawl_source` job."""
    from shared.workspace.assistants import load_assistant

    assistant = load_assistant(conn, workspace_id, values["assistant_id"])
    kind = source_kind(values["kind"])
    config: dict[str, Any] = dict(values.get("config") or {})
    url = None
    if kind.input == "url":
        url = check_source_url(values.get("url"))
        check_patterns(url, config)
    elif kind.input == "content":
        if not (values.get("content") or "").strip():
            raise field_error("content", f"A {kind.name} source needs non-empty content.")
        if not (values.get("title") or "").strip():
            raise field_error("title", f"A {kind.name} source needs a title.")
        config = {"content": values["content"]}
    interval = values.get("sync_interval_hours")
    if interval and not kind.web:
        raise field_error("sync_interval_hours", _schedule_refusal())
    language = resolve_language(conn, values.get("language"))
    try:
        row = fetch_one(conn, """
            INSERT INTO sources (workspace_id, assistant_id, kind, url, title, config, language, sync_generation,
                                 sync_interval_hours)
            VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s) RETURNING id, workspace_id, sync_generation""",
            (workspace_id, assistant.id, kind.name, url, (values.get("title") or "").strip() or None, Jsonb(config),
             language, interval))
    except psycopg.errors.ForeignKeyViolation as exc:
        if exc.diag.constraint_name != "sources_kind_fkey":
            raise
        # A kind deployed before `db migrate` added it to source_kinds: the operator's step, not the caller's.
        raise ServiceUnavailable(f"{kind.name} sources are not in the database yet: run `python -m scripts db "
                                 "migrate`.", code="migration_pending") from None
    assert row is not None
    publish_crawl(row, 1)
    return get_source(conn, workspace_id, row["id"])


def _schedule_refusal() -> str:
    return f"Only {', '.join(web_kinds())} sources can be re-synced on a schedule."


def get_source(conn: psycopg.Connection[Row], workspace_id: str, source_id: str, *,
               failed_pages: int = 20) -> Row:
    row = fetch_one(conn, f"SELECT {PUBLIC_COLUMNS} FROM sources WHERE id = %s AND workspace_id = %s",
                    (source_id, workspace_id))
    if row is None:
        raise NotFound("No such source in this workspace.", code="source_not_found")
    row["failed_pages"] = fetch_all(conn, """
        SELECT url, error FROM documents WHERE source_id = %s AND status = 'failed' AND sync_generation = %s
        ORDER BY updated_at DESC LIMIT %s""", (source_id, row["sync_generation"], failed_pages))
    return row


def update_source(conn: psycopg.Connection[Row], workspace_id: str, source_id: str, changes: dict[str, Any]) -> Row:
    """Title, schedule and crawl settings; crawl settings apply from the next sync."""
    current = get_source(conn, workspace_id, source_id, failed_pages=0)
    config = dict(current["config"])
    web = source_kind(current["kind"]).web
    config.update({k: changes[k] for k in CRAWL_SETTINGS if k in changes and web})
    if web:
        check_patterns(current["url"], config)
    elif changes.get("sync_interval_hours"):
        raise field_error("sync_interval_hours", _schedule_refusal())
    sets, params = ["config = config || %s", "updated_at = now()"], list[Any]([Jsonb(config)])
    if "title" in changes:
        sets.append("title = %s")
        params.append((changes["title"] or "").strip() or None)
    if "sync_interval_hours" in changes:
        sets.append("""sync_interval_hours = %s, next_sync_at = CASE WHEN %s::int IS NULL THEN NULL
                       ELSE coalesce(last_synced_at, now()) + make_interval(hours => %s::int) END""")
        params += [changes["sync_interval_hours"]] * 3
    conn.execute(f"UPDATE sources SET {', '.join(sets)} WHERE id = %s AND workspace_id = %s",
                 (*params, source_id, workspace_id))
    return get_source(conn, workspace_id, source_id)


def delete_source(conn: psycopg.Connection[Row], workspace_id: str, source_id: str) -> dict[str, Any]:
    """Remove a source with its documents, chunks and vectors; a running Firecrawl crawl is cancelled."""
    row = fetch_one(conn, """
        SELECT s.id, s.crawl_id, (SELECT count(*) FROM documents d WHERE d.source_id = s.id) AS documents,
               s.chunks_count FROM sources s WHERE s.id = %s AND s.workspace_id = %s""", (source_id, workspace_id))
    if row is None:
        raise NotFound("No such source in this workspace.", code="source_not_found")
    documents = [r["id"] for r in fetch_all(conn, "SELECT id FROM documents WHERE source_id = %s", (source_id,))]
    chunks = fetch_one(conn, "SELECT count(*) AS n FROM chunks WHERE document_id = ANY(%s)", (documents,))
    if documents:
        remove_chunks(conn, workspace_id, source_id, documents, documents_too=True)  # vectors first, then rows
    conn.execute("DELETE FROM sources WHERE id = %s AND workspace_id = %s", (source_id, workspace_id))
    if row["crawl_id"]:
        from shared.knowledge.crawl import firecrawl

        firecrawl.cancel(row["crawl_id"])
    return {"id": source_id, "deleted": True, "documents": row["documents"], "chunks": chunks["n"] if chunks else 0}


def list_sources(conn: psycopg.Connection[Row], workspace_id: str, assistant_id: str | None, limit: int,
                 after: list[Any] | None) -> list[Row]:
    """Newest first, `limit` + 1 rows (the extra one tells a next page exists); `after` = (created_at, id)."""
    if assistant_id and not fetch_one(conn, "SELECT 1 AS ok FROM assistants WHERE id = %s AND workspace_id = %s",
                                      (assistant_id, workspace_id)):
        raise NotFound("No such assistant in this workspace.", code="assistant_not_found")
    return fetch_all(conn, f"""
        SELECT {PUBLIC_COLUMNS}, created_at::text AS sort_at FROM sources
        WHERE workspace_id = %(ws)s AND (%(asst)s::text IS NULL OR assistant_id = %(asst)s)
          AND (%(at)s::timestamptz IS NULL OR (created_at, id) < (%(at)s::timestamptz, %(id)s))
        ORDER BY created_at DESC, id DESC LIMIT %(n)s""",
        {"ws": workspace_id, "asst": assistant_id, "at": after[0] if after else None,
         "id": after[1] if after else None, "n": limit + 1})


def list_pages(conn: psycopg.Connection[Row], workspace_id: str, source_id: str, status: str | None, limit: int,
               after: str | None) -> list[Row]:
    """A source's pages by URL with their chunk counts, `limit` + 1 rows; `after` = the last URL seen."""
    get_source(conn, workspace_id, source_id, failed_pages=0)
    return fetch_all(conn, """
        SELECT d.id, d.url, d.title, d.status, d.error, d.attempts, d.updated_at,
               (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks
        FROM documents d
        WHERE d.source_id = %(src)s AND d.workspace_id = %(ws)s AND (%(st)s::text IS NULL OR d.status = %(st)s)
          AND (%(after)s::text IS NULL OR d.url > %(after)s)
        ORDER BY d.url LIMIT %(n)s""",
        {"src": source_id, "ws": workspace_id, "st": status, "after": after, "n": limit + 1})
