-- The end user an app's token acted for (the request's X-Acting-For), from the event's
-- metadata, beside the token in `actor`. Rows written before stay NULL.
ALTER TABLE audit_log ADD COLUMN acting_for TEXT;
-- A rebuild in progress would write into a shadow copy made without the column: start it
-- again.
DROP TABLE IF EXISTS audit_log_rebuild;
DELETE FROM projection_checkpoints WHERE projection = 'audit_log#rebuild';
