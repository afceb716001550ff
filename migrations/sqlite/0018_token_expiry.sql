-- API tokens may carry an expiry (RFC 3339, UTC): past it the token no longer
-- authenticates and its live streams end. NULL: it never expires (every token made before).
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
