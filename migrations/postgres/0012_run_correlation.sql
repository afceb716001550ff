-- Every sync run now writes its events under its own id as correlation id (a run started
-- inside a request names the request as the cause), so rollback finds a run's events
-- through `events_correlation` alone. The index over the run id in record payloads cost
-- a parse of every record event's payload on insert (about a third of the insert time
-- of an import); runs written before this change are found by their run id within the
-- span of their own events (see engine/src/rollback.rs).
DROP INDEX IF EXISTS events_record_run;
