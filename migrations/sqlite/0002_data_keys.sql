-- Per-workspace data keys for envelope encryption (syncledger-vault).
-- Mutable on purpose: deleting a row crypto-shreds everything sealed under it.
-- wrapped_key = base64(nonce || ciphertext || tag) of the 32-byte data key
-- under the master key, AAD = 'datakey:' || workspace_id.
-- Times are RFC 3339 text.
CREATE TABLE IF NOT EXISTS data_keys (
    workspace_id  TEXT NOT NULL PRIMARY KEY,
    key_id        TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    wrapped_key   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    rotated_at    TEXT
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS data_keys_key_id ON data_keys (key_id);
