"""The `build_vector_index` job: build pgvector's HNSW index once a bulk load that set it aside has ended
(queued by the sync's end and by the hourly sweep; see shared/knowledge/vectors/bulk_index.py). Safe to repeat."""

from __future__ import annotations

from typing import Any

from shared.core.db import connect
from shared.core.jobs import JobPayload
from shared.knowledge.vectors.bulk_index import build


class Payload(JobPayload):
    """Nothing to say: {"cron": "vector_index"}."""


def run(payload: Payload) -> dict[str, Any]:
    with connect() as conn:
        return build(conn)
