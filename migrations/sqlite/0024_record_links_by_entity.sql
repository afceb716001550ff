-- A CRM link is keyed by its entity too. CRMs number each object type on its own (Pipedrive's
-- person 1 and organization 1 both exist), so one remote id can name a contact and a company
-- of the same integration; keyed by remote id alone, the second link overwrote the first and
-- a pull of one was applied to the other's record. SQLite cannot change a primary key: the
-- table is made anew.
CREATE TABLE record_links_by_entity
(
    workspace_id    TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    remote_id       TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    pending_push    BIGINT NOT NULL DEFAULT 0,
    -- Last, where PostgreSQL's ADD COLUMN puts it: both backends' rows read alike.
    entity          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, integration_id, entity, remote_id)
);
INSERT INTO record_links_by_entity
       (workspace_id, integration_id, remote_id, record_id, pending_push, entity)
SELECT l.workspace_id, l.integration_id, l.remote_id, l.record_id, l.pending_push,
       COALESCE(r.entity, '')
  FROM record_links l LEFT JOIN records r ON r.id = l.record_id;
DROP TABLE record_links;
ALTER TABLE record_links_by_entity RENAME TO record_links;
CREATE INDEX IF NOT EXISTS record_links_record ON record_links (record_id, integration_id);
CREATE INDEX IF NOT EXISTS record_links_pending ON record_links (integration_id, pending_push);

-- A rebuild in progress writes tables of the old shape: start it again.
DROP TABLE IF EXISTS records_rebuild;
DROP TABLE IF EXISTS record_links_rebuild;
DELETE FROM projection_checkpoints WHERE projection = 'records#rebuild';
