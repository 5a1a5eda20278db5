"""A stand-in for OpenAI's POST /v1/embeddings: deterministic vectors, real limits, scripted 429/500s.

Vectors are a hashed bag of words (lower-cased, crude plural stripping, stop words dropped), normalised,
so texts sharing words are near each other and a question finds the passage that uses its words.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import struct
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

STOP_WORDS = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in", "is", "it",
    "my", "of", "on", "or", "our", "the", "this", "to", "we", "what", "when", "where", "which", "who", "why", "with",
    "you", "your"])
MAX_INPUTS = 2048
MAX_TOKENS = 300_000


def words(text: str) -> list[str]:
    out = []
    for word in re.findall(r"\w+", text.lower()):
        if word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def embed(text: str, dimensions: int = 1536) -> list[float]:
    """The deterministic vector of `text` (a fixed pseudo-random direction when it has no words)."""
    vector = [0.0] * dimensions
    for word in words(text) or ["\x00empty"]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class FakeEmbeddings:
    """Serve `app`; `fail(status, times)` makes the next requests fail; `requests` records each call's inputs.

    `outage_after = n`: after n successful requests every request answers 503 (an outage) until reset to None.
    """

    def __init__(self, api_key: str = "sk-test-embeddings") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self.outage_after: int | None = None
        self.delay_s = 0.0  # every answer waits this long (a slow API; lets concurrent jobs overlap)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])

    def fail(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures += [status] * times

    @property
    def inputs_embedded(self) -> int:
        return sum(len(r["input"]) for r in self.requests)

    async def embeddings(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        with self._lock:
            status = self._failures.pop(0) if self._failures else None
            if self.outage_after is not None and len(self.requests) >= self.outage_after:
                status = 503
        if status is not None:
            return _error(status, "Rate limit reached." if status == 429 else "The server had an error.",
                          "requests" if status == 429 else "server_error", None,
                          headers={"retry-after-ms": "10"})  # short, so the SDK's retries keep tests fast
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = await request.json()
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
            return _error(400, "'input' must be a non-empty string or array of non-empty strings.",
                          "invalid_request_error", None)
        if len(inputs) > MAX_INPUTS:
            return _error(400, f"'input' must have at most {MAX_INPUTS} items.", "invalid_request_error", None)
        tokens = sum(len(t.split()) + len(t) // 8 for t in inputs)
        if tokens > MAX_TOKENS:
            return _error(400, f"Requested {tokens} tokens, max {MAX_TOKENS} tokens per request.",
                          "invalid_request_error", "max_tokens_per_request")
        dimensions = int(body.get("dimensions") or 1536)
        self.requests.append({"input": inputs, "model": body.get("model"), "dimensions": dimensions})
        data = []
        for index, text in enumerate(inputs):
            vector = embed(text, dimensions)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _error(status: int, message: str, kind: str, code: str | None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)
