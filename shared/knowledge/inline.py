"""Sources whose content comes with them: pasted `text` and `markdown`, and uploaded files (`file`, parsed
to markdown when uploaded). Their sync indexes the one document right away; there is nothing to fetch."""

from __future__ import annotations

from typing import Any

from shared.core.db import Row
from shared.knowledge import SourceKind
from shared.knowledge.crawl import Page
from shared.knowledge.crawl.pipeline import mark_indexing, register_pages


def index_inline(conn: Any, source: Row, generation: int) -> dict[str, Any]:
    """The content is in the source: one document, indexed now."""
    from shared.knowledge.crawl.ingest import process_page

    config = source["config"]
    url = f"upload://{source['id']}/{config.get('file_name') or 'text'}"
    register_pages(conn, source, generation, [url], include_pending=True)
    mark_indexing(conn, source["id"], generation)
    page = Page(url=url, title=source["title"] or "", markdown=config.get("content") or "")
    return process_page(conn, source, generation, url, page=page)


KINDS = (
    SourceKind("text", "Pasted plain text (content and title).", "content", index_inline, web=False, single_page=True),
    SourceKind("markdown", "Pasted markdown (content and title).", "content", index_inline, web=False,
               single_page=True),
    SourceKind("file", "An uploaded file: PDF, Word, HTML, text, markdown, CSV or JSON (multipart/form-data).",
               "file", index_inline, web=False, single_page=True),
)
