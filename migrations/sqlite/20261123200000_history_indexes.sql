-- Indexes for the history's filters with keyset paging (order by run_id desc): each filter
-- column with run_id, so a filtered page reads its 50 rows, not every run of the filter.
create index run_job_id on run (job, run_id);
create index run_user_id on run (user_name, run_id);
create index run_channel_id on run (channel_name, run_id);
create index run_created on run (created_at);
