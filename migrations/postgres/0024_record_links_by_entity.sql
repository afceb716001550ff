-- A CRM link is keyed by its entity too. CRMs number each object type on its own (Pipedrive's
-- person 1 and organization 1 both exist), so one remote id can name a contact and a company
-- of the same integration; keyed by remote id alone, the second link overwrote the first and
-- a pull of one was applied to the other's record.
ALTER TABLE record_links ADD COLUMN IF NOT EXISTS entity TEXT NOT NULL DEFAULT '';
UPDATE record_links l SET entity = r.entity FROM records r WHERE r.id = l.record_id;
ALTER TABLE record_links DROP CONSTRAINT IF EXISTS record_links_pkey;
ALTER TABLE record_links ADD PRIMARY KEY (workspace_id, integration_id, entity, remote_id);

-- A rebuild in progress writes tables of the old shape: start it again.
DROP TABLE IF EXISTS records_rebuild;
DROP TABLE IF EXISTS record_links_rebuild;
DELETE FROM projection_checkpoints WHERE projection = 'records#rebuild';
