-- Rollback: find every event a sync run wrote (its correlation id, or the run id in the
-- payload for runs started inside a request), and hide records a rollback archived.
CREATE INDEX IF NOT EXISTS events_correlation ON events ((metadata->>'correlation_id'));
CREATE INDEX IF NOT EXISTS events_record_run ON events ((payload->>'run_id'))
    WHERE aggregate_type = 'record';
ALTER TABLE records ADD COLUMN IF NOT EXISTS archived BOOLEAN NOT NULL DEFAULT FALSE;
