-- BM25 statistics per assistant and text-search configuration: in how many chunks each lexeme occurs
-- (chunks) and, on the row whose lexeme is '', how many chunks there are and their summed token_count.
--
-- The table is a ledger of signed deltas, not one row per lexeme: triggers on chunks only ever INSERT
-- (one row per lexeme a statement added or removed), so parallel ingest jobs never wait on each other's
-- row locks and cannot deadlock on shared counters, and no update is ever lost. Readers sum the rows;
-- compact_term_stats() folds them together now and then (shared/term_stats.py).
CREATE TABLE term_stats (
    workspace_id  text NOT NULL,                -- goes with its assistant (a workspace's go with it)
    assistant_id  text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    language      regconfig NOT NULL,
    lexeme        text NOT NULL,
    chunks        int NOT NULL,                -- delta of the lexeme's document frequency (or of the chunk count)
    tokens        bigint NOT NULL DEFAULT 0    -- '' row only: delta of the summed chunk lengths
);
CREATE INDEX term_stats_lookup ON term_stats (workspace_id, assistant_id, lexeme);

-- Statement-level triggers see every row a statement (a COPY of a page's chunks, a DELETE of a source's, a
-- cascade from a deleted document) touched at once, so one INSERT carries the whole change. Rows of an
-- assistant deleted in the same statement are skipped (its statistics go with it by the cascade).
-- Chunk rows are never edited in place (their id is their content's hash): an edit is a delete and an insert.
CREATE FUNCTION term_stats_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign int := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO term_stats (workspace_id, assistant_id, language, lexeme, chunks, tokens)
    SELECT d.workspace_id, d.assistant_id, d.language, d.lexeme, sign * d.chunks, sign * d.tokens
    FROM (SELECT c.workspace_id, c.assistant_id, c.language, t.lexeme, count(*)::int AS chunks, 0::bigint AS tokens
          FROM changed_chunks c CROSS JOIN LATERAL unnest(tsvector_to_array(c.tsv)) AS t(lexeme)
          GROUP BY 1, 2, 3, 4
          UNION ALL
          SELECT c.workspace_id, c.assistant_id, c.language, '', count(*)::int, sum(c.token_count)::bigint
          FROM changed_chunks c GROUP BY 1, 2, 3) d
    WHERE EXISTS (SELECT 1 FROM assistants a WHERE a.id = d.assistant_id);
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_term_stats_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS changed_chunks FOR EACH STATEMENT EXECUTE FUNCTION term_stats_change();
CREATE TRIGGER chunks_term_stats_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS changed_chunks FOR EACH STATEMENT EXECUTE FUNCTION term_stats_change();

-- The chunks already there. The triggers exist (and block writers) from here to the commit, so no chunk is
-- counted twice or missed; on a large table this holds ingestion for seconds, not longer.
INSERT INTO term_stats (workspace_id, assistant_id, language, lexeme, chunks, tokens)
SELECT c.workspace_id, c.assistant_id, c.language, t.lexeme, count(*), 0
FROM chunks c CROSS JOIN LATERAL unnest(tsvector_to_array(c.tsv)) AS t(lexeme)
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT c.workspace_id, c.assistant_id, c.language, '', count(*), sum(c.token_count)
FROM chunks c GROUP BY 1, 2, 3;
