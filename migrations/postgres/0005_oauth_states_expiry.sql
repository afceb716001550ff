-- Expired authorization states are deleted when a new one is issued; this keeps that cheap.
CREATE INDEX IF NOT EXISTS oauth_states_expiry ON oauth_states (expires_at);
