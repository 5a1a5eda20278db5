"""A tiny Sentry ingest: accepts envelopes at POST /api/<project>/envelope/ and keeps their decoded bodies."""

from __future__ import annotations

import gzip
import zlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app(received: list[bytes]) -> Starlette:
    """Every envelope body (decompressed) is appended to `received`."""

    async def envelope(request: Request) -> JSONResponse:
        body = await request.body()
        encoding = request.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # only when the SDK found brotli installed

            body = brotli.decompress(body)
        received.append(body)
        return JSONResponse({"id": "0" * 32})

    return Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"]),
                             Route("/api/{project}/store/", envelope, methods=["POST"])])
