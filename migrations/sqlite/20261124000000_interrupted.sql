-- no-transaction
-- Runs and steps can end "interrupted": chatrun stopped (crash, kill, shutdown) while they ran.
-- SQLite cannot change a CHECK constraint in place, so `run` and `step` are rebuilt the way
-- https://www.sqlite.org/lang_altertable.html#otheralter describes: foreign keys off (outside
-- the transaction, where the pragma works), copy, drop, rename, re-index, check, on again.
pragma foreign_keys = off;
begin immediate;

create table run_new (
    run_id           integer primary key autoincrement, -- never reused, even after the newest run is deleted
    platform         text not null,                     -- 'mattermost', 'teams' or 'web'
    team_id          text not null default '',
    team_name        text not null default '',
    channel_id       text not null default '',
    channel_name     text not null default '',
    user_id          text not null default '',
    user_name        text not null default '',
    message_id       text not null,                     -- the trigger post's id: the idempotency key
    thread_root_id   text,                              -- root of the thread the result goes to; null when unknown
    message          text not null,                     -- the trigger text, as typed
    job              text not null,
    args             text not null default '',          -- what followed the job name, as typed
    status           text not null default 'queued'
        check (status in ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                          'denied', 'interrupted')),
    attempt          integer not null default 0,        -- +1 on every claim; finish and renew check it (a lost lease cannot write)
    lease_owner      text,                              -- host:pid#worker
    lease_expires_at integer,
    ack_text         text not null,                     -- the acknowledgement, so a duplicate delivery gets the same one
    error            text,                              -- why the service (not the job) could not run it
    log_head         text not null default '',          -- first bytes of the output; the whole log is in log_path
    log_tail         text not null default '',          -- last bytes of the output
    log_bytes        integer not null default 0,
    log_path         text,
    created_at       integer not null,
    started_at       integer,
    finished_at      integer,
    hook             text not null default '',          -- the Teams webhook's name; '' for Mattermost
    concurrency      integer not null default 1,        -- the job's concurrency when queued
    log_lines        integer not null default 0
);
insert into run_new (run_id, platform, team_id, team_name, channel_id, channel_name, user_id,
    user_name, message_id, thread_root_id, message, job, args, status, attempt, lease_owner,
    lease_expires_at, ack_text, error, log_head, log_tail, log_bytes, log_path, created_at,
    started_at, finished_at, hook, concurrency, log_lines)
select run_id, platform, team_id, team_name, channel_id, channel_name, user_id,
    user_name, message_id, thread_root_id, message, job, args, status, attempt, lease_owner,
    lease_expires_at, ack_text, error, log_head, log_tail, log_bytes, log_path, created_at,
    started_at, finished_at, hook, concurrency, log_lines
from run;
-- Keep the high-water mark of run numbers (a deleted newest run's number stays used).
update sqlite_sequence set seq = max(seq, coalesce((select seq from sqlite_sequence where name = 'run'), 0))
where name = 'run_new';

create table step_new (
    run_id            integer not null references run (run_id) on delete cascade,
    position          integer not null,                 -- 0-based order in the job
    name              text not null,
    status            text not null default 'pending'
        check (status in ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                          'skipped', 'error', 'interrupted')),
    exit_code         integer,                          -- null when killed by a signal or never started
    detail            text,                             -- e.g. "killed by signal 9", "cannot start: no such file"
    started_at        integer,
    finished_at       integer,
    tests_run         integer,
    tests_failed      integer,                          -- failures + errors
    tests_skipped     integer,
    tests_duration_ms integer,
    report_error      text,                             -- "report missing: …" / "report unreadable: …"
    output_tail       text,                             -- the step's last output lines, for failed steps
    primary key (run_id, position)
);
insert into step_new (run_id, position, name, status, exit_code, detail, started_at, finished_at,
    tests_run, tests_failed, tests_skipped, tests_duration_ms, report_error, output_tail)
select run_id, position, name, status, exit_code, detail, started_at, finished_at,
    tests_run, tests_failed, tests_skipped, tests_duration_ms, report_error, output_tail
from step;

drop table step;
drop table run;
alter table run_new rename to run;
alter table step_new rename to step;

create unique index run_message on run (platform, message_id);
create index run_status on run (status, run_id);
create index run_job_status on run (job, status);
create index run_job_id on run (job, run_id);
create index run_user_id on run (user_name, run_id);
create index run_channel_id on run (channel_name, run_id);
create index run_created on run (created_at);

commit;
pragma foreign_keys = on;
