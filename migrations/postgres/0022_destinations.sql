-- Postgres destinations.
--
-- Read model: each destination as its events leave it (its sealed database URL removed;
-- the sink reads it from the aggregate). `deleted` is 0 or 1. The sink's checkpoints and
-- held records live in the destination's own database, in the same transaction as the
-- rows they describe.
CREATE TABLE IF NOT EXISTS destinations
(
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT   NOT NULL,
    deleted       BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    created_at    TEXT   NOT NULL,
    updated_at    TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    last_position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS destinations_workspace ON destinations (workspace_id, id);
