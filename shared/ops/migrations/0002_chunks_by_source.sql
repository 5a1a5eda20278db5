-- Deleting or re-syncing a source removes its chunks by source_id: index it instead of scanning every chunk.
CREATE INDEX IF NOT EXISTS chunks_source ON chunks (source_id);
