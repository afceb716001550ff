-- The dashboard's people: one-time sign-in links and the sessions they (or an API token)
-- start. Only SHA-256 digests of the link codes and session ids are stored, so a copy of
-- the database grants nobody a session. Times are fixed-width RFC 3339 text in UTC, so
-- they compare correctly as strings. Owned by engine/src/sign_in.rs.
CREATE TABLE IF NOT EXISTS sign_in_links (
    id           TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    role         TEXT NOT NULL,
    code_hash    TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
) STRICT;

CREATE INDEX IF NOT EXISTS sign_in_links_expiry ON sign_in_links (expires_at);

CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash      TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    role         TEXT NOT NULL,
    -- Who acts: `token:<id>` (signed in with an API token) or `link:<id>`.
    actor        TEXT NOT NULL,
    -- The API token it was started with, if any: revoking that token ends the session.
    token_id     TEXT,
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    ended_at     TEXT
) STRICT;

CREATE INDEX IF NOT EXISTS dashboard_sessions_seen ON dashboard_sessions (last_seen_at);
