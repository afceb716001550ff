-- Every list's default order has an index that starts with the workspace (and the list's
-- other equality filters) followed by the order's columns, so a page is a seek and a walk
-- of one page, whatever the workspace's size. `projections::plans` names each list's
-- statement and the tests check their plans.

-- Match keys compare byte by byte (code point order), as on SQLite: a search by prefix is
-- then a range of the index, which the database's own collation would not guarantee.
-- Equality (how runs match records) is the same under both.
ALTER TABLE records ALTER COLUMN match_key TYPE TEXT COLLATE "C";

-- Records without `entity`, in (updated_at, id) order; `updated_since` is a range on the
-- same index. Not partial on `archived = FALSE`: the same index serves `include_archived`,
-- and archived records (their archiving is their last change) sit at the recent end.
CREATE INDEX IF NOT EXISTS records_workspace_order ON records (workspace_id, updated_at, id);
-- Search by match-key prefix: a range on match_key, in (match_key, id) order.
CREATE INDEX IF NOT EXISTS records_match_prefix ON records (workspace_id, match_key, id);
-- Records linked to an integration: each record walked is checked by its own links
-- (a record has a link or two), never by walking the integration's.
DROP INDEX IF EXISTS record_links_record;
CREATE INDEX IF NOT EXISTS record_links_record ON record_links (record_id, integration_id);

-- An integration's runs, newest id first.
CREATE INDEX IF NOT EXISTS sync_runs_listed ON sync_runs (workspace_id, integration_id, id);
-- An integration's latest run by queue time (its card, its page).
DROP INDEX IF EXISTS sync_runs_integration;
CREATE INDEX IF NOT EXISTS sync_runs_integration ON sync_runs (integration_id, queued_at, id);

-- Conflicts in (detected_at, id) order, all or of one status (the queue).
CREATE INDEX IF NOT EXISTS conflicts_listed ON conflicts (workspace_id, detected_at, id);
DROP INDEX IF EXISTS conflicts_queue;
CREATE INDEX IF NOT EXISTS conflicts_queue ON conflicts (workspace_id, status, detected_at, id);
-- An integration's open conflicts, counted for its card.
CREATE INDEX IF NOT EXISTS conflicts_integration ON conflicts (workspace_id, integration_id, status);

-- The audit trail filtered by actor or action, in chain order (by integration:
-- audit_log_integration, 0003): rare or late matches are a seek, not a walk of the trail.
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (workspace_id, actor, chain_seq);
CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (workspace_id, action, chain_seq);

-- API tokens by id.
DROP INDEX IF EXISTS api_tokens_workspace;
CREATE INDEX IF NOT EXISTS api_tokens_workspace ON api_tokens (workspace_id, id);

-- A rebuild in progress copied its shadow tables (columns and indexes) before this
-- migration: start those again.
DROP TABLE IF EXISTS records_rebuild;
DROP TABLE IF EXISTS record_links_rebuild;
DROP TABLE IF EXISTS sync_runs_rebuild;
DROP TABLE IF EXISTS conflicts_rebuild;
DROP TABLE IF EXISTS audit_log_rebuild;
DELETE FROM projection_checkpoints
 WHERE projection IN ('records#rebuild', 'sync_runs#rebuild', 'conflicts#rebuild',
                      'audit_log#rebuild');
