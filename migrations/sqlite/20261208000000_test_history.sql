-- Test history (#24). Each failed test keeps the first run of its streak: the runs of the same
-- job with the same arguments it has failed in, one after another, up to this one. Written
-- with the failure, from the previous finished run's row of the same test (found by the
-- indexes below); failures written before this are left without (null).
alter table test_failure add column since integer;
-- A run's failure of one test, looked up by the next run of the job with the same arguments.
create index test_failure_test on test_failure (run_id, suite, name);
-- The latest finished runs of a job with given arguments.
create index run_history on run (job, args, run_id);
