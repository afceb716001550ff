-- Pending OAuth authorizations: one row per `state` handed to a provider.
-- The PKCE verifier is sealed with the workspace's data key (syncledger-vault).
-- A row is claimed once (used_at set) by the callback; times are RFC 3339 text in UTC
-- with a fixed width, so they compare correctly as strings.
CREATE TABLE IF NOT EXISTS oauth_states (
    state               TEXT NOT NULL PRIMARY KEY,
    workspace_id        TEXT NOT NULL,
    integration_id      TEXT NOT NULL,
    verifier_key_id     TEXT NOT NULL,
    verifier_nonce      TEXT NOT NULL,
    verifier_ciphertext TEXT NOT NULL,
    redirect_uri        TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    used_at             TEXT
) STRICT;

CREATE INDEX IF NOT EXISTS oauth_states_integration ON oauth_states (integration_id);
