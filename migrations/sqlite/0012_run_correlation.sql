-- See the PostgreSQL migration of the same name: rollback finds a run's events by its
-- correlation id, and those of runs written before by their run id within the run's span.
DROP INDEX IF EXISTS events_record_run;
