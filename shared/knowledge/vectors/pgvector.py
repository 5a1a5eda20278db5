"""The pgvector backend: vectors live in chunks.embedding (HNSW index, cosine) next to the rows they index."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from pgvector.psycopg.vector import VectorBinaryDumper, register_vector_info
from psycopg.types import TypeInfo

from shared.core.settings import get_settings
from shared.knowledge.vectors import VectorRecord, require_filter
from shared.knowledge.vectors.dimensions import column_dimensions, column_mismatch, verify, verify_vector


class PgVector(list):  # type: ignore[type-arg]
    """A vector for a `%b::vector` query parameter: dumped by pgvector's own binary dumper (UntypedVectorDumper).
    A connection opened before this module was imported lacks the dumper: psycopg then sends the list as a
    float8[] and the `::vector` cast turns it into the same vector."""


class UntypedVectorDumper(VectorBinaryDumper):
    """pgvector's own binary dumper with the type oid left unknown (0): the `%b::vector` cast in the SQL names
    the type, so a query needs no catalog look-up (a round trip) on its connection first. Binary, because
    formatting 1,536 floats as text and parsing them again costs about 2 ms a vector."""

    oid = 0


psycopg.adapters.register_dumper(PgVector, UntypedVectorDumper)


def adapt(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """`conn` with the dumper, whenever it was opened (a dictionary entry: no round trip)."""
    conn.adapters.register_dumper(PgVector, UntypedVectorDumper)
    return conn


def vector_copy_type(cursor: psycopg.Cursor[Any]) -> str:
    """Ready `cursor` for a binary COPY with a vector column (`copy.set_types([..., "vector"])`): pgvector's
    dumpers registered on this cursor only, with the type's oid, which COPY needs. The oid is looked up
    once per connection; the connection's own adapters get only the type's name (no loaders), so nothing
    else read on it changes shape."""
    conn = cursor.connection
    info = conn.adapters.types.get("vector")
    if info is None:
        info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise RuntimeError("the vector extension is not installed (run python -m scripts db migrate)")
        info.register(conn)
    register_vector_info(cursor, info)  # type: ignore[arg-type]  # a cursor is an adapt context too
    return "vector"


@contextlib.contextmanager
def _connection(conn: Any) -> Iterator[Any]:
    if conn is not None:
        yield conn
        return
    from shared.core.db import connect

    with connect() as own:
        yield own


class PgVectorStore:
    """Vectors live in chunks.embedding; a vector's id is its chunk's id, so the chunk row must exist."""

    name = "pgvector"

    def upsert(self, workspace_id: str, records: list[VectorRecord], *, conn: Any = None) -> int:
        if not records:
            return 0
        dimensions = get_settings().embedding_dimensions
        for record in records:
            verify_vector(record.values, dimensions)
        with _connection(conn) as db, db.transaction(), adapt(db).cursor() as cursor:
            verify(db, dimensions)
            # executemany pipelines the statements (one round trip, vectors in binary); one commit for all.
            cursor.executemany("""UPDATE chunks SET embedding = %b::vector, vector_id = id
                                  WHERE id = %s AND workspace_id = %s""",
                               [(PgVector(r.values), r.id, workspace_id) for r in records], returning=False)
            return cursor.rowcount

    def delete(self, workspace_id: str, ids: list[str], *, conn: Any = None) -> None:
        if not ids:
            return
        with _connection(conn) as db:
            db.execute("""UPDATE chunks SET embedding = NULL, vector_id = NULL
                          WHERE id = ANY(%s) AND workspace_id = %s AND embedding IS NOT NULL""",
                       (ids, workspace_id))

    def delete_by_filter(self, workspace_id: str, *, assistant_id: str | None = None,
                         source_id: str | None = None, conn: Any = None) -> None:
        require_filter(assistant_id, source_id)
        with _connection(conn) as db:
            db.execute("""UPDATE chunks SET embedding = NULL, vector_id = NULL
                          WHERE workspace_id = %(ws)s AND embedding IS NOT NULL
                            AND (%(asst)s::text IS NULL OR assistant_id = %(asst)s)
                            AND (%(src)s::text IS NULL OR source_id = %(src)s)""",
                       {"ws": workspace_id, "asst": assistant_id, "src": source_id})

    def query(self, workspace_id: str, assistant_id: str, vector: list[float], top_k: int,
              *, conn: Any = None) -> list[tuple[str, float]]:
        with _connection(conn) as db:
            verify(db, len(vector))
            rows = adapt(db).execute(QUERY, {"ws": workspace_id, "asst": assistant_id, "vec": PgVector(vector),
                                      "k": top_k}).fetchall()
        return [(row["id"], float(row["score"])) for row in rows]

    def health(self) -> str:
        from shared.core.db import connect

        with connect() as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            if not row:
                raise RuntimeError("the vector extension is not installed (run python -m scripts db migrate)")
            dimensions = get_settings().embedding_dimensions
            column = column_dimensions(conn)  # read each time: a health check must not trust a cache
        if column is not None and column != dimensions:
            raise column_mismatch(dimensions, column)
        return f"pgvector {row['extversion']}, {dimensions} dimensions"


# The HNSW index answers ORDER BY embedding <=> vector LIMIT k; cosine distance -> similarity.
QUERY = """
    SELECT id, 1 - (embedding <=> %(vec)b::vector) AS score
    FROM chunks
    WHERE workspace_id = %(ws)s AND assistant_id = %(asst)s AND embedding IS NOT NULL
    ORDER BY embedding <=> %(vec)b::vector
    LIMIT %(k)s"""
