-- Read model: the conflict queue. One row per conflict a merge found on one field of a
-- record with one integration. A queued conflict stays open until a person resolves or
-- ignores it, or a later merge replaces or settles it (superseded); one the policy
-- settled at once is recorded as resolved, resolution auto.
CREATE TABLE IF NOT EXISTS conflicts
(
    -- SHA-256 of record, integration, field and the record event that found it.
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT   NOT NULL,
    integration_id  TEXT   NOT NULL,
    record_id       TEXT   NOT NULL,
    entity          TEXT   NOT NULL,
    field           TEXT   NOT NULL,
    base_value      TEXT,
    app_value       TEXT,
    crm_value       TEXT,
    -- open, resolved, ignored or superseded.
    status          TEXT   NOT NULL,
    detected_at     TEXT   NOT NULL,
    resolved_at     TEXT,
    resolved_by     TEXT,
    -- use_app, use_crm, merged, ignored or auto.
    resolution      TEXT,
    -- The value the field took when the conflict was resolved.
    resolved_value  TEXT,
    -- The record event (its sequence) and feed position that last wrote the row.
    record_version  BIGINT NOT NULL,
    last_position   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS conflicts_queue ON conflicts (workspace_id, status, detected_at);
CREATE INDEX IF NOT EXISTS conflicts_record ON conflicts (record_id, integration_id, field);
