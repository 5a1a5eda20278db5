"""Adding a file source: read the multipart upload within MAX_UPLOAD_BYTES, parse it (in the bounded child
process of shared.knowledge.crawl.sandbox) and answer a refusal with the status that fits it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from shared.core.errors import AppError, PayloadTooLarge, ServiceUnavailable, Unprocessable, UnsupportedMediaType
from shared.knowledge.crawl import CrawlError

MULTIPART_SLACK = 64_000      # form fields and boundaries around the file


def too_large(limit: int, size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload is {size} bytes; the limit is {limit} bytes (MAX_UPLOAD_BYTES).",
                           details={"limit_bytes": limit, "size_bytes": size})


def file_missing() -> Unprocessable:
    return Unprocessable("Send the file in a multipart field named 'file'.", code="file_missing",
                         details=[{"field": "file", "problem": "missing", "type": "missing"}])


async def upload_values(request: Request, limit: int) -> dict[str, Any]:
    """The values of a new `file` source from a multipart request (file, assistant_id, title, language)."""
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise file_missing()
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit, upload.size or len(data))
    if not data:
        raise Unprocessable("The file is empty.", code="empty_file")
    from shared.knowledge.crawl.extract import parse_file

    try:  # PDF, Word and HTML are parsed in a bounded child process (shared.knowledge.crawl.sandbox)
        kind, title, markdown = await run_in_threadpool(parse_file, upload.filename, data)
    except CrawlError as exc:
        raise parse_refusal(exc, upload.filename) from None
    text = {name: str(form.get(name) or "").strip() for name in ("assistant_id", "title", "language")}
    if not text["assistant_id"]:
        raise Unprocessable("Send the assistant_id form field with the file.", code="validation_error",
                            details=[{"field": "assistant_id", "problem": "missing", "type": "missing"}])
    return {"assistant_id": text["assistant_id"], "kind": "file", "title": text["title"][:300] or title,
            "language": text["language"] or None,
            "config": {"content": markdown, "file_name": upload.filename[:300], "file_type": kind,
                       "file_size": len(data)}}


def parse_refusal(exc: CrawlError, file_name: str) -> AppError:
    """415 unsupported type, 413 too large once unpacked, 503 parsers busy, else 422; a parse bound's
    setting and value are in the details."""
    from shared.knowledge.crawl.sandbox import TOO_LARGE_CODES, ParseLimitError

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
