-- Checkpoints: how far each projection (and each publisher) has read the feed.
-- The position is the pair (transaction id, global position); on SQLite the
-- transaction id is always 0.
CREATE TABLE IF NOT EXISTS projection_checkpoints
(
    projection  TEXT PRIMARY KEY,
    tx          BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    events      BIGINT NOT NULL,
    updated_at  TEXT   NOT NULL
);

-- API tokens: only a SHA-256 of the secret part is stored.
CREATE TABLE IF NOT EXISTS api_tokens
(
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL,
    role          TEXT NOT NULL,
    label         TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE INDEX IF NOT EXISTS api_tokens_workspace ON api_tokens (workspace_id);

-- Read model: integration status. Never holds a credential.
CREATE TABLE IF NOT EXISTS integration_status
(
    id                     TEXT PRIMARY KEY,
    workspace_id           TEXT   NOT NULL,
    provider               TEXT   NOT NULL,
    name                   TEXT   NOT NULL,
    status                 TEXT   NOT NULL,
    sync_config            TEXT   NOT NULL,
    base_url               TEXT,
    last_error             TEXT,
    credential_kind        TEXT,
    credentials_expire_at  TEXT,
    last_sync_at           TEXT,
    next_sync_at           TEXT,
    created_at             TEXT   NOT NULL,
    updated_at             TEXT   NOT NULL,
    version                BIGINT NOT NULL,
    last_position          BIGINT NOT NULL,
    -- The aggregate's state as replayed by the projection, with the credential removed.
    state                  TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS integration_status_workspace ON integration_status (workspace_id, id);

-- Read model: the audit log, one hash chain per workspace.
CREATE TABLE IF NOT EXISTS audit_log
(
    workspace_id    TEXT   NOT NULL,
    chain_seq       BIGINT NOT NULL,
    position        BIGINT NOT NULL,
    recorded_at     TEXT   NOT NULL,
    aggregate_type  TEXT   NOT NULL,
    aggregate_id    TEXT   NOT NULL,
    sequence        BIGINT NOT NULL,
    integration_id  TEXT,
    actor           TEXT   NOT NULL,
    correlation_id  TEXT   NOT NULL,
    causation_id    TEXT,
    action          TEXT   NOT NULL,
    summary         TEXT   NOT NULL,
    prev_hash       TEXT   NOT NULL,
    hash            TEXT   NOT NULL,
    PRIMARY KEY (workspace_id, chain_seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_position ON audit_log (position);
CREATE INDEX IF NOT EXISTS audit_log_integration ON audit_log (workspace_id, integration_id, chain_seq);
