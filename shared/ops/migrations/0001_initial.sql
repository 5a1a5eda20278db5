-- The whole data model (ARCHITECTURE §4). Every row that belongs to a workspace carries workspace_id.
-- Ids are text with a readable prefix ("asst_9f2c..."), made by new_id().

CREATE EXTENSION IF NOT EXISTS vector;

CREATE FUNCTION new_id(prefix text) RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT prefix || '_' || replace(gen_random_uuid()::text, '-', '') $$;

CREATE TABLE workspaces (
    id          text PRIMARY KEY DEFAULT new_id('ws'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    settings    jsonb NOT NULL DEFAULT '{}',            -- limits and budgets that override the defaults
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- People who sign in through NextAuth and the workspaces they belong to.
CREATE TABLE workspace_members (
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    email        text NOT NULL,
    role         text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'member')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, email)
);
CREATE INDEX workspace_members_email ON workspace_members (lower(email));

CREATE TABLE api_keys (
    id              text PRIMARY KEY DEFAULT new_id('key'),
    workspace_id    text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    name            text NOT NULL DEFAULT '',
    prefix          text NOT NULL,                       -- shown in lists so people can tell keys apart
    hash            text NOT NULL UNIQUE,                -- sha256 of the whole key; the key itself is never stored
    scope           text NOT NULL CHECK (scope IN ('admin', 'chat')),
    allowed_origins text[] NOT NULL DEFAULT '{}',        -- chat keys: empty = any origin
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

-- workspace_id NULL = built-in (the `default` template), visible to every workspace, read-only.
CREATE TABLE templates (
    id              text PRIMARY KEY DEFAULT new_id('tpl'),
    workspace_id    text REFERENCES workspaces ON DELETE CASCADE,
    name            text NOT NULL,
    latest_version  int NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX templates_workspace ON templates (workspace_id);

CREATE TABLE template_versions (
    template_id  text NOT NULL REFERENCES templates ON DELETE CASCADE,
    version      int NOT NULL,
    workspace_id text REFERENCES workspaces ON DELETE CASCADE,
    config       jsonb NOT NULL,                         -- prompt, model, retrieval, language, ... (shared/templates)
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

CREATE TABLE assistants (
    id                 text PRIMARY KEY DEFAULT new_id('asst'),
    workspace_id       text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    name               text NOT NULL,
    template_id        text NOT NULL REFERENCES templates,
    template_version   int,                              -- NULL = follow the template's latest version
    overrides          jsonb NOT NULL DEFAULT '{}',
    allowed_origins    text[] NOT NULL DEFAULT '{}',
    limits             jsonb NOT NULL DEFAULT '{}',      -- rate limits and token budget per assistant
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assistants_workspace ON assistants (workspace_id);

CREATE TABLE sources (
    id                   text PRIMARY KEY DEFAULT new_id('src'),
    workspace_id         text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    assistant_id         text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    kind                 text NOT NULL CHECK (kind IN ('url', 'site', 'sitemap', 'text', 'markdown', 'file')),
    url                  text,
    title                text,
    config               jsonb NOT NULL DEFAULT '{}',    -- page limit, include/exclude patterns, depth, file name
    language             text NOT NULL DEFAULT 'english', -- Postgres text-search configuration
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'crawling', 'indexing', 'ready', 'failed')),
    pages_found          int NOT NULL DEFAULT 0,
    pages_done           int NOT NULL DEFAULT 0,
    pages_failed         int NOT NULL DEFAULT 0,
    chunks_count         int NOT NULL DEFAULT 0,
    embeddings           text NOT NULL DEFAULT 'pending', -- pending | ready | keyword_only (no embedding key)
    crawl_id             text,                            -- Firecrawl job id while a crawl runs
    sync_generation      int NOT NULL DEFAULT 0,          -- bumped by every resync; pages not seen again vanish
    sync_interval_hours  int,
    last_synced_at       timestamptz,
    next_sync_at         timestamptz,
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sources_assistant ON sources (workspace_id, assistant_id);
CREATE INDEX sources_due ON sources (next_sync_at) WHERE next_sync_at IS NOT NULL;

CREATE TABLE documents (
    id               text PRIMARY KEY DEFAULT new_id('doc'),
    workspace_id     text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    assistant_id     text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    source_id        text NOT NULL REFERENCES sources ON DELETE CASCADE,
    url              text NOT NULL,
    title            text,
    content_hash     text,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error            text,
    attempts         int NOT NULL DEFAULT 0,
    sync_generation  int NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_id, url)
);

CREATE TABLE chunks (
    id            text PRIMARY KEY,                     -- deterministic: document id + ordinal + content hash
    workspace_id  text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    assistant_id  text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    source_id     text NOT NULL REFERENCES sources ON DELETE CASCADE,
    document_id   text NOT NULL REFERENCES documents ON DELETE CASCADE,
    ordinal       int NOT NULL,
    title         text,
    heading_path  text NOT NULL DEFAULT '',
    url           text,
    text          text NOT NULL,
    token_count   int NOT NULL,
    content_hash  text NOT NULL,
    language      regconfig NOT NULL DEFAULT 'english',
    tsv           tsvector GENERATED ALWAYS AS (
                      setweight(to_tsvector(language, coalesce(title, '') || ' ' || heading_path), 'A')
                      || setweight(to_tsvector(language, text), 'B')) STORED,
    vector_id     text,                                 -- set once the vector is in the index
    embedding     vector(1536),                         -- pgvector backend only; Pinecone keeps its own
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_assistant ON chunks (workspace_id, assistant_id);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);

CREATE TABLE conversations (
    id                text PRIMARY KEY DEFAULT new_id('conv'),
    workspace_id      text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    assistant_id      text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    external_user_id  text,
    api_key_id        text,                              -- the key that started it (chat keys see only theirs)
    title             text,
    metadata          jsonb NOT NULL DEFAULT '{}',
    summary           text,                              -- older history, summarised off the request path
    summary_through   bigint NOT NULL DEFAULT 0,         -- messages.seq the summary covers
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_list ON conversations (workspace_id, assistant_id, updated_at DESC);
CREATE INDEX conversations_user ON conversations (workspace_id, external_user_id);

CREATE TABLE messages (
    id               text PRIMARY KEY DEFAULT new_id('msg'),
    seq              bigserial UNIQUE,                   -- total order inside a conversation
    workspace_id     text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    conversation_id  text NOT NULL REFERENCES conversations ON DELETE CASCADE,
    role             text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content          text NOT NULL,
    redacted_content text,                               -- PII placeholders in; what models and logs saw
    citations        jsonb NOT NULL DEFAULT '[]',
    model            text,
    provider         text,
    failover         jsonb,                              -- which providers failed before this one answered, and why
    usage            jsonb NOT NULL DEFAULT '{}',
    timings          jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'complete' CHECK (status IN ('streaming', 'complete', 'partial', 'failed')),
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_conversation ON messages (conversation_id, seq);

CREATE TABLE feedback (
    id            text PRIMARY KEY DEFAULT new_id('fb'),
    workspace_id  text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    assistant_id  text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    message_id    text NOT NULL UNIQUE REFERENCES messages ON DELETE CASCADE,
    rating        smallint NOT NULL CHECK (rating IN (-1, 1)),
    comment       text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_assistant ON feedback (workspace_id, assistant_id, created_at DESC);

-- Every QStash delivery we ran (or refused to run twice).
CREATE TABLE jobs (
    id            text PRIMARY KEY DEFAULT new_id('job'),
    workspace_id  text REFERENCES workspaces ON DELETE CASCADE,
    name          text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    attempts      int NOT NULL DEFAULT 1,
    error         text,
    message_id    text UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    duration_ms   double precision
);
CREATE INDEX jobs_recent ON jobs (created_at DESC);

-- The runbook's PerformanceMonitor.
CREATE TABLE performance_metrics (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    value         double precision NOT NULL,
    "timestamp"   timestamptz NOT NULL DEFAULT now(),
    metadata      jsonb NOT NULL DEFAULT '{}',
    workspace_id  text
);
CREATE INDEX performance_metrics_name_time ON performance_metrics (name, "timestamp");

-- Daily token usage per workspace, for spend caps.
CREATE TABLE usage_daily (
    workspace_id  text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    day           date NOT NULL,
    tokens_in     bigint NOT NULL DEFAULT 0,
    tokens_out    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, day)
);

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    actor         text NOT NULL,                         -- "key:<id>" or "user:<email>"
    action        text NOT NULL,
    target        text,
    details       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_recent ON audit_log (workspace_id, created_at DESC);

-- Queries slower than a threshold, for `db slow-queries` where pg_stat_statements is missing.
CREATE TABLE slow_queries (
    id           bigserial PRIMARY KEY,
    query        text NOT NULL,
    duration_ms  double precision NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
