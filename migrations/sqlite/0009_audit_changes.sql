-- The audit trail shows what each record event changed: `changes` holds
-- [{"field","before","after"}] as JSON (NULL when the event changed no app field).
ALTER TABLE audit_log ADD COLUMN changes TEXT;

-- The audit projection's own copy of each record's replayed state, to diff against.
CREATE TABLE IF NOT EXISTS audit_record_state
(
    id              TEXT PRIMARY KEY,
    state           TEXT   NOT NULL,
    version         BIGINT NOT NULL,
    last_position   BIGINT NOT NULL
);

-- The integration of each sync run, so that every row of a run carries it.
CREATE TABLE IF NOT EXISTS audit_run_integration
(
    run_id          TEXT PRIMARY KEY,
    integration_id  TEXT NOT NULL
);

-- Rows written before this migration have no changes and no states to diff against:
-- the audit projection starts again from the first event. Its hashes depend only on
-- the events, so the rebuilt chain is the same chain.
DELETE FROM audit_log;
DELETE FROM projection_checkpoints WHERE projection IN ('audit_log', 'audit_log#rebuild');
DROP TABLE IF EXISTS audit_log_rebuild;
