-- Per-job queue policies: how many runs of a job may execute at once. Copied from the job when
-- the run is queued, so the claim query needs no catalog: a queued run is claimable while
-- fewer than `concurrency` runs of its job hold a live lease.
alter table run add column concurrency integer not null default 1;
create index run_job_status on run (job, status);
