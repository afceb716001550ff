-- The event log: the table sqlite-es reads and writes, plus a stable global position.
-- SQLite has one writer at a time, so insertion order is commit order. The position is
-- an explicit column (not the implicit rowid, which VACUUM may renumber), assigned by a
-- trigger inside the inserting transaction.
CREATE TABLE IF NOT EXISTS events
(
    aggregate_type  text                          NOT NULL,
    aggregate_id    text                          NOT NULL,
    sequence        integer CHECK (sequence >= 0) NOT NULL,
    event_type      text                          NOT NULL,
    event_version   text                          NOT NULL,
    payload         text                          NOT NULL,
    metadata        text                          NOT NULL,
    global_position integer,
    recorded_at     text                          NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS events_global_position ON events (global_position);

CREATE TRIGGER IF NOT EXISTS events_assign_global_position
AFTER INSERT ON events
FOR EACH ROW WHEN NEW.global_position IS NULL
BEGIN
    UPDATE events
       SET global_position = (SELECT COALESCE(MAX(global_position), 0) + 1 FROM events)
     WHERE rowid = NEW.rowid;
END;
