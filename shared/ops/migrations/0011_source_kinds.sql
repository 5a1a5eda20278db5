-- Source kinds are a registry (shared/knowledge): the kinds a source may have are the rows of source_kinds,
-- which `db migrate` fills from the registry (shared.migrate.ensure_source_kinds), instead of a CHECK that
-- had to be edited with every new kind. The kinds that exist today are inserted here, before the foreign key
-- checks the stored sources. One transaction: sources holds one row per source (not per page), so the check
-- is short, and an interrupted run leaves nothing half done.
CREATE TABLE source_kinds (
    name text PRIMARY KEY
);
INSERT INTO source_kinds (name) VALUES ('url'), ('site'), ('sitemap'), ('text'), ('markdown'), ('file');
ALTER TABLE sources DROP CONSTRAINT IF EXISTS sources_kind_check;
ALTER TABLE sources ADD CONSTRAINT sources_kind_fkey FOREIGN KEY (kind) REFERENCES source_kinds (name);
