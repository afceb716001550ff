-- Idempotency-Key: per workspace and key, the request that claimed it (a SHA-256 of its
-- method, path and body), when (milliseconds since the epoch), and once it succeeded, its
-- status and JSON answer (replayed to a retry for 24 hours).
CREATE TABLE IF NOT EXISTS idempotency_keys
(
    workspace_id TEXT   NOT NULL,
    key          TEXT   NOT NULL,
    fingerprint  TEXT   NOT NULL,
    status       BIGINT,
    response     TEXT,
    claimed_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
