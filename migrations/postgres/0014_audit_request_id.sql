-- The client's own `x-request-id`, kept beside the server-minted correlation id (which a
-- client can no longer choose). Rows written before stay NULL.
ALTER TABLE audit_log ADD COLUMN request_id TEXT;
-- A rebuild in progress would write into a shadow copy made without the column: start it
-- again.
DROP TABLE IF EXISTS audit_log_rebuild;
DELETE FROM projection_checkpoints WHERE projection = 'audit_log#rebuild';
