-- A test that failed, then passed on a retry in the same run (a report's <flakyFailure>): kept
-- with the step's failures, marked, so it is shown as flaky and never counted as failed.
alter table test_failure add column passed_on_retry integer not null default 0;
