-- A re-sync removes a page only when it proved the page gone (404/410, or missing from a listing that was
-- read completely). What the latest sync kept and removed, why it was incomplete, and how often in a row.
ALTER TABLE sources
    ADD COLUMN IF NOT EXISTS pages_kept          int NOT NULL DEFAULT 0,  -- earlier content kept, page not read
    ADD COLUMN IF NOT EXISTS pages_removed       int NOT NULL DEFAULT 0,  -- pages removed as proved gone
    ADD COLUMN IF NOT EXISTS incomplete_reason   text,                    -- why this sync cannot see every page
    ADD COLUMN IF NOT EXISTS discovery_attempts  int NOT NULL DEFAULT 0,  -- crawl_source runs of this sync
    ADD COLUMN IF NOT EXISTS sync_retries        int NOT NULL DEFAULT 0;  -- incomplete syncs in a row (backoff)

-- An attempt at a page in flight: a second delivery of the same page job meanwhile is not another attempt.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS attempt_started_at timestamptz;
