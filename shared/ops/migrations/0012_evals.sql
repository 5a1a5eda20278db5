-- Evaluation sets, runs and gates (README "Evaluations", shared/evals/).
-- A set belongs to one assistant; its cases say what a good answer needs. A run executes every active case
-- against the assistant at one template version; eval_results holds one row per case, made when the run
-- starts (status 'pending'), so progress, resuming and metrics are all read from rows, never from counters.

CREATE TABLE eval_sets (
    id            text PRIMARY KEY DEFAULT new_id('evset'),
    workspace_id  text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    assistant_id  text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    run_on_resync boolean NOT NULL DEFAULT false,       -- a finished knowledge sync of the assistant runs the set
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX eval_sets_assistant ON eval_sets (workspace_id, assistant_id);

CREATE TABLE eval_cases (
    id                text PRIMARY KEY DEFAULT new_id('evcase'),
    workspace_id      text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    set_id            text NOT NULL REFERENCES eval_sets ON DELETE CASCADE,
    question          text NOT NULL CHECK (length(question) BETWEEN 1 AND 8000),
    expected_sources  jsonb NOT NULL DEFAULT '[]',   -- [{url} | {document_id} | {chunk_id}]
    key_facts         jsonb NOT NULL DEFAULT '[]',   -- strings that must appear in the answer
    expect_abstain    boolean NOT NULL DEFAULT false,
    tags              text[] NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draft')),
    origin            text NOT NULL DEFAULT 'manual' CHECK (origin IN ('manual', 'import', 'drafted')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX eval_cases_set ON eval_cases (set_id, created_at, id);

CREATE TABLE eval_runs (
    id                text PRIMARY KEY DEFAULT new_id('evrun'),
    workspace_id      text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    set_id            text NOT NULL REFERENCES eval_sets ON DELETE CASCADE,
    assistant_id      text NOT NULL REFERENCES assistants ON DELETE CASCADE,
    template_id       text NOT NULL,
    template_version  int NOT NULL,
    status            text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    trigger           text NOT NULL DEFAULT 'manual',   -- manual | cli | resync
    dispatches        int NOT NULL DEFAULT 0,            -- fan-outs so far (a resume is one more)
    metrics           jsonb,                             -- set when the last case is done
    alert             jsonb,                             -- resync runs: the metrics that dropped, if any
    created_by        text,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);
CREATE INDEX eval_runs_set ON eval_runs (workspace_id, set_id, created_at DESC);
CREATE INDEX eval_runs_template ON eval_runs (template_id, template_version, status);

CREATE TABLE eval_results (
    run_id        text NOT NULL REFERENCES eval_runs ON DELETE CASCADE,
    case_id       text NOT NULL,                 -- no foreign key: a run keeps its cases after they change
    workspace_id  text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    ordinal       int NOT NULL,
    expected      jsonb NOT NULL,                -- the case as it was when the run started
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'error')),
    attempts      int NOT NULL DEFAULT 0,
    lease_until   timestamptz,                   -- a 'running' case past this is taken over by the next batch
    answer        text,
    citations     jsonb,
    passages      jsonb,
    abstained     boolean,
    timings       jsonb,
    usage         jsonb,
    cost_usd      double precision,
    model         text,
    scores        jsonb,                         -- per case: rank, citation checks, facts found, support
    error         text,
    finished_at   timestamptz,
    PRIMARY KEY (run_id, case_id)
);
CREATE INDEX eval_results_open ON eval_results (run_id) WHERE status IN ('pending', 'running');

-- Gates: a gated template keeps its assistants on `published_version` until a newer version passes its set.
ALTER TABLE templates ADD COLUMN published_version int;  -- NULL = not gated: assistants follow latest_version
ALTER TABLE templates ADD COLUMN gate jsonb;             -- {set_id, tolerances: {metric: number}}
