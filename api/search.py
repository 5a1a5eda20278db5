"""POST /api/search: retrieval alone, with each method's rank and score, for debugging an assistant's knowledge."""

from __future__ import annotations

import time
from typing import Literal

from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field

from shared.core.http import create_app
from shared.guard.deps import AdminKey, Db
from shared.knowledge.retrieval import effective_mode, retrieve
from shared.workspace.assistants import get_assistant

app = create_app("search", description="Hybrid retrieval over an assistant's knowledge, with scores.")

Mode = Literal["keyword", "vector", "hybrid"]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: str = Field(min_length=1, max_length=100)
    query: str = Field(min_length=1, max_length=1000)
    top_k: int | None = Field(default=None, ge=1, le=50, description="Default: the assistant's template")
    mode: Mode | None = Field(default=None, description="Default: the assistant's template")
    min_score: float | None = Field(default=None, ge=0.0, le=1.0, description="Default: the assistant's template")


class MethodScore(BaseModel):
    rank: int | None = Field(description="1 = best; null = this method did not find the passage")
    score: float | None = Field(description="ts_rank for keyword, cosine similarity for vector")


class SearchResult(BaseModel):
    chunk_id: str
    source_id: str
    document_id: str
    title: str | None
    url: str | None
    heading_path: str
    text: str
    score: float = Field(description=(
        "Reciprocal rank fusion (k=60), vector ranks weighted by the keyword evidence, scaled to 0..1 "
        "(1: first in every list that counts)"))
    keyword: MethodScore
    vector: MethodScore


class SearchResponse(BaseModel):
    query: str
    mode: Mode = Field(description="The mode asked for (or the template's)")
    effective_mode: Mode = Field(description="The mode that ran: keyword when no embeddings API is configured")
    top_k: int
    min_score: float
    results: list[SearchResult]
    count: int
    took_ms: float


@app.post("/api/search", response_model=SearchResponse, summary="Search an assistant's knowledge")
def search(body: SearchRequest, principal: AdminKey, conn: Db) -> SearchResponse:
    """The passages the chat would retrieve for this query, with each method's rank and score."""
    retrieval = get_assistant(conn, principal.workspace_id, body.assistant_id).config.retrieval
    mode = body.mode or retrieval.mode
    top_k = body.top_k or retrieval.top_k
    min_score = retrieval.min_score if body.min_score is None else body.min_score
    started = time.perf_counter()
    passages = retrieve(conn, workspace_id=principal.workspace_id, assistant_id=body.assistant_id,
                        query=body.query, top_k=top_k, min_score=min_score, mode=mode)
    took_ms = round((time.perf_counter() - started) * 1000, 2)
    results = [SearchResult(chunk_id=p.chunk_id, source_id=p.source_id, document_id=p.document_id, title=p.title,
                            url=p.url, heading_path=p.heading_path, text=p.text, score=round(p.score, 6),
                            keyword=MethodScore(rank=p.keyword_rank, score=p.keyword_score),
                            vector=MethodScore(rank=p.vector_rank, score=p.vector_score))
               for p in passages]
    return SearchResponse(query=body.query, mode=mode, effective_mode=effective_mode(mode), top_k=top_k,
                          min_score=min_score, results=results, count=len(results), took_ms=took_ms)


lambda_handler = Mangum(app)
