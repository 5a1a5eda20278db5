-- Languages per page: a source that names no language is 'auto' (each page's language is detected when it
-- is indexed and stored in chunks.language), and the configurations its pages use are kept in
-- sources.languages, so a search parses the query only in those without scanning chunks.
ALTER TABLE sources
    ADD COLUMN IF NOT EXISTS languages text[] NOT NULL DEFAULT '{}';  -- text search configurations in use
ALTER TABLE sources ALTER COLUMN language SET DEFAULT 'auto';

-- The built-in template answers in the user's language: a new version of each built-in template whose
-- latest version still says English (the old default). Assistants that pinned a version keep theirs.
WITH stale AS (
    SELECT t.id, t.latest_version, v.config
    FROM templates t JOIN template_versions v ON v.template_id = t.id AND v.version = t.latest_version
    WHERE t.workspace_id IS NULL AND v.config->>'language' = 'en'
    FOR UPDATE OF t),
bumped AS (
    UPDATE templates t SET latest_version = s.latest_version + 1, updated_at = now()
    FROM stale s WHERE t.id = s.id
    RETURNING t.id, t.latest_version)
INSERT INTO template_versions (template_id, version, workspace_id, config, created_by)
SELECT b.id, b.latest_version, NULL, jsonb_set(s.config, '{language}', '"auto"'), 'system'
FROM bumped b JOIN stale s ON s.id = b.id;
