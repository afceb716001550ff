-- When an integration's credentials were set (stored by someone) and last rotated (an
-- OAuth refresh): what the dashboard shows of a credential besides its kind. Rows written
-- before stay NULL until their next credential event or `syncledger replay`.
ALTER TABLE integration_status ADD COLUMN credentials_set_at TEXT;
ALTER TABLE integration_status ADD COLUMN credentials_rotated_at TEXT;
-- A rebuild in progress would write into a shadow copy made without the columns: start it
-- again.
DROP TABLE IF EXISTS integration_status_rebuild;
DELETE FROM projection_checkpoints WHERE projection = 'integration_status#rebuild';
