-- How many values of the record wait to be pushed to this link's CRM: the push pass
-- reads only the links that owe something.
ALTER TABLE record_links ADD COLUMN pending_push BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS record_links_pending ON record_links (integration_id, pending_push);
