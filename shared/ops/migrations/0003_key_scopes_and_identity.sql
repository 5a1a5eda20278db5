-- Chat keys reach only the assistants they were made for; identity verification per chat key;
-- conversations belong to one visitor (a verified user id or an engine-issued anonymous id).

ALTER TABLE api_keys
    ADD COLUMN assistant_ids    text[] NOT NULL DEFAULT '{}',  -- chat keys: the assistants it may reach
    ADD COLUMN identity_secret  text,                          -- chat keys: HMAC secret for user_hash (shown once)
    ADD COLUMN require_identity boolean NOT NULL DEFAULT false, -- refuse visitors without a verified user id
    -- Signs the anonymous visitor tokens the engine issues; never leaves the database.
    ADD COLUMN visitor_secret   text NOT NULL
        DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');

-- Existing chat keys were unscoped. Keep the widgets that use them working, but no more: each key is
-- scoped to the assistants it has actually talked to. A key that never chatted reaches nothing until an
-- admin names its assistants (PATCH /api/keys/{id}); internal assistants it never used stop answering it.
UPDATE api_keys k SET assistant_ids = coalesce(
    (SELECT array_agg(DISTINCT c.assistant_id ORDER BY c.assistant_id) FROM conversations c
     WHERE c.api_key_id = k.id AND c.workspace_id = k.workspace_id), '{}')
WHERE k.scope = 'chat';

-- The visitor a conversation belongs to ("user:<id>" verified, "anon:<id>" issued). Conversations from
-- before this migration have none: chat keys can no longer open them (admins still can).
ALTER TABLE conversations ADD COLUMN visitor_id text;
