-- A first sync of a large source loads its vectors while pgvector's HNSW index is away, and the index is built
-- once afterwards (shared/vectors/bulk_index.py). One row per sync that asked for it; the build waits for none.
CREATE TABLE IF NOT EXISTS vector_index_deferrals (
    source_id   text PRIMARY KEY REFERENCES sources ON DELETE CASCADE,
    generation  int NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
