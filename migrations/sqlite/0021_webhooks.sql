-- Outgoing webhooks.
--
-- Read model: each webhook endpoint as its events leave it (the signing secrets removed;
-- the delivery worker reads them from the aggregate). `enabled` and `deleted` are 0 or 1.
CREATE TABLE IF NOT EXISTS webhook_endpoints
(
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT   NOT NULL,
    enabled       BIGINT NOT NULL,
    deleted       BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    created_at    TEXT   NOT NULL,
    updated_at    TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    last_position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_workspace ON webhook_endpoints (workspace_id, id);

-- Delivery state, not a read model: how far each endpoint has delivered the feed (its
-- position, the replay generation that moved it last), which process delivers it now
-- (a lease, so two servers never deliver one endpoint), and since when nothing succeeded.
CREATE TABLE IF NOT EXISTS webhook_checkpoints
(
    endpoint_id   TEXT PRIMARY KEY,
    tx            BIGINT NOT NULL,
    position      BIGINT NOT NULL,
    generation    BIGINT NOT NULL,
    holder        TEXT,
    lease_until   BIGINT,
    failing_since BIGINT
);

-- Every delivery attempt: its message (`webhook-id`), outcome and, while retrying, when
-- the next attempt is due. Times are milliseconds since the epoch.
CREATE TABLE IF NOT EXISTS webhook_deliveries
(
    endpoint_id     TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    attempt         BIGINT NOT NULL,
    workspace_id    TEXT   NOT NULL,
    tx              BIGINT NOT NULL,
    position        BIGINT NOT NULL,
    event_type      TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    response_code   BIGINT,
    error           TEXT,
    attempted_at    BIGINT NOT NULL,
    next_attempt_at BIGINT,
    PRIMARY KEY (endpoint_id, message_id, attempt)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_listed
    ON webhook_deliveries (endpoint_id, attempted_at);
