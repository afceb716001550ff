-- Read model: sync runs, one row per run with its status, counters and resume points.
CREATE TABLE IF NOT EXISTS sync_runs
(
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT   NOT NULL,
    integration_id  TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    trigger_kind    TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    stats           TEXT   NOT NULL,
    worker          TEXT,
    reason          TEXT,
    queued_at       TEXT   NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    version         BIGINT NOT NULL,
    last_position   BIGINT NOT NULL,
    -- The aggregate's state as replayed by the projection.
    state           TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_runs_integration ON sync_runs (integration_id, queued_at);
CREATE INDEX IF NOT EXISTS sync_runs_workspace ON sync_runs (workspace_id, queued_at);

-- Read model: records as the app sees them: current values with their provenance, and
-- the CRM records each is linked to.
CREATE TABLE IF NOT EXISTS records
(
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT   NOT NULL,
    entity          TEXT   NOT NULL,
    -- email for contacts, domain for companies, lower case: how CRMs converge on a record.
    match_key       TEXT,
    fields          TEXT   NOT NULL,
    created_at      TEXT   NOT NULL,
    updated_at      TEXT   NOT NULL,
    version         BIGINT NOT NULL,
    last_position   BIGINT NOT NULL,
    state           TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS records_workspace_updated ON records (workspace_id, entity, updated_at, id);
CREATE INDEX IF NOT EXISTS records_match_key ON records (workspace_id, entity, match_key);

-- Which record a CRM record is linked to.
CREATE TABLE IF NOT EXISTS record_links
(
    workspace_id    TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    remote_id       TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    PRIMARY KEY (workspace_id, integration_id, remote_id)
);
CREATE INDEX IF NOT EXISTS record_links_record ON record_links (record_id);
