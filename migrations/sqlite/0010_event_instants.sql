-- Each event's instant (`recorded_at`) to the microsecond, for point-in-time reads.
--
-- SQLite's clock ('now') only has milliseconds, too coarse to tell apart two events
-- written within one millisecond. The instant is taken instead from the event's metadata
-- `time`, which the store stamps (microseconds, fixed-width RFC 3339 UTC) when it writes
-- the event, and is never earlier than the previous event's: instants follow commit order
-- and never pass the commit itself. Every instant has the same width
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text order is time order.

-- Rows written before: the same instant, in the microsecond width.
UPDATE events
   SET recorded_at = substr(recorded_at, 1, 23) || '000Z'
 WHERE recorded_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z';

DROP TRIGGER IF EXISTS events_assign_global_position;

CREATE TRIGGER events_assign_global_position
AFTER INSERT ON events
FOR EACH ROW WHEN NEW.global_position IS NULL
BEGIN
    UPDATE events
       SET global_position = (SELECT COALESCE(MAX(global_position), 0) + 1 FROM events),
           recorded_at = max(
               CASE
                   WHEN json_valid(NEW.metadata)
                    AND json_extract(NEW.metadata, '$.time') GLOB
                        '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
                   THEN json_extract(NEW.metadata, '$.time')
                   ELSE strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'
               END,
               COALESCE((SELECT e.recorded_at FROM events e
                          WHERE e.global_position = (SELECT MAX(global_position) FROM events)), ''))
     WHERE rowid = NEW.rowid;
END;
