"""The Pinecone backend (REST client): one namespace per workspace, metadata {assistant, source, document, chunk}.

Requests are split to Pinecone's limits: upsert at most 1,000 records and 2 MB of JSON, delete at most
1,000 ids; metadata must stay under 40 KB per record and may not hold nulls. The control plane is
https://api.pinecone.io unless PINECONE_CONTROLLER_HOST says otherwise (the SDK reads it; tests point
it at a local stand-in); the data-plane host is PINECONE_HOST, else looked up by index name once.
The SDK (v10, httpx) keeps a host's scheme as given: "http://127.0.0.1:port/..." stays cleartext (it
warns unless the host is loopback or private), a bare host means https; a path prefix is kept too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

from shared.core.settings import get_settings
from shared.knowledge.vectors import Metadata, VectorRecord, require_filter
from shared.knowledge.vectors.dimensions import EmbeddingDimensionsMismatch

log = logging.getLogger("dialog_engine.vectors")

MAX_UPSERT_RECORDS = 1000
MAX_UPSERT_BYTES = 2 * 1024 * 1024 - 16 * 1024   # 2 MB less room for the envelope and namespace
MAX_METADATA_BYTES = 40 * 1024
MAX_DELETE_IDS = 1000


def control_plane(api_key: str) -> Any:
    """A Pinecone control-plane client (imported on first use: the SDK costs start-up time)."""
    from pinecone import Pinecone

    return Pinecone(api_key=api_key, source_tag="dialog_engine")


def clean_metadata(metadata: Metadata) -> Metadata:
    """Drop nulls (Pinecone refuses them) and refuse metadata over 40 KB with a clear error."""
    cleaned = {k: v for k, v in metadata.items() if v is not None}
    size = len(json.dumps(cleaned, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"vector metadata is {size} bytes; Pinecone allows {MAX_METADATA_BYTES}")
    return cleaned


def record_size(record: dict[str, Any]) -> int:
    # Close to the SDK's encoding; floats in repr form are the bulk of it.
    return len(json.dumps(record, separators=(",", ":")).encode()) + 1


def upsert_batches(records: list[dict[str, Any]], max_records: int = MAX_UPSERT_RECORDS,
                   max_bytes: int = MAX_UPSERT_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Consecutive slices within both request limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for record in records:
        cost = record_size(record)
        if batch and (len(batch) >= max_records or size + cost > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += cost
    if batch:
        yield batch


@contextlib.contextmanager
def _missing_namespace_is_empty() -> Iterator[None]:
    """Serverless Pinecone answers 404 when deleting from a namespace never written to: nothing to delete."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "status_code", None) != 404 or "namespace" not in str(exc).lower():
            raise


def _assistant_filter(assistant_id: str | None, source_id: str | None) -> dict[str, Any]:
    clauses = [{"assistant": {"$eq": assistant_id}}] if assistant_id else []
    clauses += [{"source": {"$eq": source_id}}] if source_id else []
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def index_mismatch(index_name: str, setting: int, index_dimension: int) -> EmbeddingDimensionsMismatch:
    return EmbeddingDimensionsMismatch(
        f"EMBEDDING_DIMENSIONS is {setting} but the Pinecone index {index_name} has dimension {index_dimension}: "
        f"create an index of {setting} (python -m scripts pinecone create-index with another PINECONE_INDEX), "
        f"then python -m scripts vectorize all; or set EMBEDDING_DIMENSIONS back to {index_dimension}",
        details={"setting": setting, "stored": index_dimension})


def _named_dimension_error(exc: Exception, index_name: str, sent: int) -> Exception:
    """Pinecone's 400 "Vector dimension X does not match the dimension of the index Y", naming our setting."""
    match = re.search(r"dimension of the index (\d+)", str(exc))
    if getattr(exc, "status", getattr(exc, "status_code", None)) != 400 or not match:
        return exc
    return index_mismatch(index_name, sent, int(match.group(1)))


class PineconeStore:
    """One index; a namespace per workspace so one tenant's data never meets another's query."""

    name = "pinecone"

    def __init__(self, api_key: str, index_name: str, host: str | None = None) -> None:
        self.api_key = api_key
        self.index_name = index_name
        self.host = host
        self._index: Any = None

    @classmethod
    def from_settings(cls) -> PineconeStore:
        settings = get_settings()
        if not settings.pinecone_api_key:
            raise LookupError("PINECONE_API_KEY is not set (or set VECTOR_BACKEND=pgvector)")
        return cls(settings.pinecone_api_key, settings.pinecone_index, settings.pinecone_host)

    @property
    def index(self) -> Any:
        """The data-plane client, resolving the host by name (one describe call) when it isn't configured."""
        if self._index is None:
            pc = control_plane(self.api_key)
            host = self.host or pc.describe_index(self.index_name).host
            self._index = pc.Index(host=host)
            self.host = host
        return self._index

    def upsert(self, workspace_id: str, records: list[VectorRecord], *, conn: Any = None) -> int:
        items = [{"id": r.id, "values": [float(v) for v in r.values], "metadata": clean_metadata(r.metadata)}
                 for r in records]
        written = 0
        for batch in upsert_batches(items):
            try:
                reply = self.index.upsert(vectors=batch, namespace=workspace_id)
            except Exception as exc:
                named = _named_dimension_error(exc, self.index_name, len(batch[0]["values"]))
                if named is exc:
                    raise
                raise named from exc
            written += int(reply.upserted_count)
        return written

    def delete(self, workspace_id: str, ids: list[str], *, conn: Any = None) -> None:
        for start in range(0, len(ids), MAX_DELETE_IDS):
            with _missing_namespace_is_empty():
                self.index.delete(ids=ids[start:start + MAX_DELETE_IDS], namespace=workspace_id)

    def delete_by_filter(self, workspace_id: str, *, assistant_id: str | None = None,
                         source_id: str | None = None, conn: Any = None) -> None:
        require_filter(assistant_id, source_id)
        with _missing_namespace_is_empty():
            self.index.delete(filter=_assistant_filter(assistant_id, source_id), namespace=workspace_id)

    def query(self, workspace_id: str, assistant_id: str, vector: list[float], top_k: int,
              *, conn: Any = None) -> list[tuple[str, float]]:
        reply = self.index.query(vector=vector, top_k=top_k, namespace=workspace_id,
                                 filter={"assistant": {"$eq": assistant_id}}, include_metadata=False)
        return [(match.id, float(match.score)) for match in reply.matches]

    def health(self) -> str:
        stats = self.index.describe_index_stats()
        setting = get_settings().embedding_dimensions
        if stats.dimension and int(stats.dimension) != setting:
            raise index_mismatch(self.index_name, setting, int(stats.dimension))
        return f"pinecone index {self.index_name}: {stats.total_vector_count} vectors, dimension {stats.dimension}"
