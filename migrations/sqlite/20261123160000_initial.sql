-- chatrun's first schema: runs, their steps, and the outbox of replies to deliver.
-- Times are integer milliseconds since the Unix epoch (UTC), bound from Rust: no now() in SQL,
-- so tests can inject a clock and every timestamp sorts and subtracts as a plain integer.

-- One requested execution of a job.
create table run (
    run_id           integer primary key autoincrement, -- autoincrement: a run number is never reused, even after the newest run is deleted
    platform         text not null,                     -- 'mattermost' (Teams comes next)
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
        check (status in ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'denied')),
    attempt          integer not null default 0,        -- +1 on every claim; finish and renew check it (a lost lease cannot write)
    lease_owner      text,
    lease_expires_at integer,
    ack_text         text not null,                     -- the acknowledgement, so a duplicate delivery gets the same one
    error            text,                              -- why the service (not the job) could not run it
    log_head         text not null default '',          -- first bytes of the output; the whole log is in log_path
    log_tail         text not null default '',          -- last bytes of the output
    log_bytes        integer not null default 0,
    log_path         text,
    created_at       integer not null,
    started_at       integer,
    finished_at      integer
);

-- A chat server that delivers the same post twice (two hooks, a retry) makes one run.
create unique index run_message on run (platform, message_id);
-- Workers claim the oldest queued run; the history lists newest first.
create index run_status on run (status, run_id);

-- One step of a run, written as the run progresses so the run page shows where it is.
create table step (
    run_id      integer not null references run (run_id) on delete cascade,
    position    integer not null,                       -- 0-based order in the job
    name        text not null,
    status      text not null default 'pending'
        check (status in ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'error')),
    exit_code   integer,                                -- null when killed by a signal or never started
    detail      text,                                   -- e.g. "killed by signal 9", "cannot start: no such file"
    started_at  integer,
    finished_at integer,
    primary key (run_id, position)
);

-- Replies waiting to be delivered. Inserted in the same transaction as the state they report,
-- so no reply is lost and none is sent about something that was not stored.
create table outbox (
    outbox_id       integer primary key,
    run_id          integer references run (run_id) on delete cascade,
    target          text not null,                      -- where to send, resolved from the configuration at send time (no secrets stored here)
    body            text not null,                      -- the JSON to POST
    status          text not null default 'pending' check (status in ('pending', 'sent', 'dead')),
    attempts        integer not null default 0,
    next_attempt_at integer not null,                   -- also the claim: a sender pushes it forward while it tries
    last_error      text,
    created_at      integer not null,
    sent_at         integer
);

create index outbox_due on outbox (status, next_attempt_at);
