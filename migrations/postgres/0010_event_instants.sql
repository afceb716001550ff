-- Point-in-time reads count each event from its `recorded_at`: the server clock at the
-- start of the writing transaction (microseconds), so never later than the commit.
-- (SQLite takes the same instant from the event's metadata: see its 0010.)
COMMENT ON COLUMN events.recorded_at IS
    'The instant the event counts from in point-in-time reads: start of the writing transaction';
