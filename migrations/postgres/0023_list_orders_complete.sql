-- The lists 0016 left out (checked, as 0016's, by the query-plan test over
-- `projections::plans` and the other lists' statements).

-- An endpoint's delivery attempts, newest first by (attempted_at, message_id, attempt):
-- the index had only attempted_at, so every page sorted what it read, and the keyset had
-- no bound on attempted_at to seek to, so a later page walked every newer attempt first.
DROP INDEX IF EXISTS webhook_deliveries_listed;
CREATE INDEX IF NOT EXISTS webhook_deliveries_listed
    ON webhook_deliveries (endpoint_id, attempted_at, message_id, attempt);

-- Conflicts of one integration (open ones too: walking an integration's conflicts beats
-- the workspace's open queue of every integration) and of one record, in (detected_at, id)
-- order: before, both walked all of the workspace's conflicts to fill a page.
CREATE INDEX IF NOT EXISTS conflicts_integration_listed
    ON conflicts (workspace_id, integration_id, detected_at, id);
CREATE INDEX IF NOT EXISTS conflicts_record_listed
    ON conflicts (workspace_id, record_id, detected_at, id);
-- An integration's open conflicts, counted for its card (0016), made again after the two
-- above: the same index, and still the one the count's plan takes from an index alone on
-- an empty table, where PostgreSQL's costs tie and it takes the newest candidate.
DROP INDEX IF EXISTS conflicts_integration;
CREATE INDEX IF NOT EXISTS conflicts_integration ON conflicts (workspace_id, integration_id, status);

-- A rebuild in progress copied its shadow table (columns and indexes) before this
-- migration: start it again.
DROP TABLE IF EXISTS conflicts_rebuild;
DELETE FROM projection_checkpoints WHERE projection = 'conflicts#rebuild';
