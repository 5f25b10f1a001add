-- The Postgres schema: the same tables and meanings as SQLite's (migrations/sqlite/), in one
-- step. Times are integer milliseconds since the epoch, as everywhere in chatrun.

-- Run numbers: taken by `insert_run` before the row is written, so the acknowledgement can
-- name the run; two instances never hand out the same number (a number may be skipped).
create sequence run_number as bigint;

create table run (
    run_id           bigint primary key,
    platform         text not null,                     -- 'mattermost', 'teams' or 'web'
    team_id          text not null default '',
    team_name        text not null default '',
    channel_id       text not null default '',
    channel_name     text not null default '',
    user_id          text not null default '',
    user_name        text not null default '',
    message_id       text not null,                     -- the trigger post's id: the idempotency key
    thread_root_id   text,                              -- root of the thread the result goes to; null when unknown
    thread_unsettled boolean not null default false,    -- the thread could not be looked up yet
    message          text not null,                     -- the trigger text, as typed
    job              text not null,
    args             text not null default '',
    hook             text not null default '',          -- the Teams webhook's name; '' for Mattermost
    status           text not null default 'queued'
        check (status in ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                          'denied', 'interrupted')),
    concurrency      bigint not null default 1,         -- the job's concurrency when queued
    attempt          bigint not null default 0,         -- +1 on every claim; later writes check it
    lease_owner      text,                              -- host:pid#worker
    lease_expires_at bigint,
    cancel_reason    text,                              -- set when a stop was asked for while it ran
    ack_text         text not null,
    error            text,
    log_head         text not null default '',
    log_tail         text not null default '',
    log_bytes        bigint not null default 0,
    log_lines        bigint not null default 0,
    log_path         text,
    created_at       bigint not null,
    started_at       bigint,
    finished_at      bigint
);

create unique index run_message on run (platform, message_id);
create index run_status_job_id on run (status, job, run_id);
create index run_job_id on run (job, run_id);
create index run_user_id on run (user_name, run_id);
create index run_channel_id on run (channel_name, run_id);
create index run_created on run (created_at);

create table step (
    run_id            bigint not null references run (run_id) on delete cascade,
    position          bigint not null,
    name              text not null,
    status            text not null default 'pending'
        check (status in ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled',
                          'skipped', 'error', 'interrupted')),
    exit_code         bigint,
    detail            text,
    started_at        bigint,
    finished_at       bigint,
    tests_run         bigint,
    tests_failed      bigint,
    tests_skipped     bigint,
    tests_duration_ms bigint,
    report_error      text,
    output_tail       text,
    primary key (run_id, position)
);

create table test_failure (
    run_id   bigint not null,
    position bigint not null,
    ordinal  bigint not null,
    suite    text not null,
    name     text not null,
    message  text not null,
    detail   text not null,
    primary key (run_id, position, ordinal),
    foreign key (run_id, position) references step (run_id, position) on delete cascade
);

create table outbox (
    outbox_id       bigserial primary key,
    run_id          bigint references run (run_id) on delete cascade,
    target          text not null,
    body            text not null,
    thread          text,
    kind            text not null default 'worded' check (kind in ('worded', 'result')),
    status          text not null default 'pending' check (status in ('pending', 'sent', 'dead')),
    attempts        bigint not null default 0,
    next_attempt_at bigint not null,
    last_error      text,
    created_at      bigint not null,
    sent_at         bigint,
    sending         boolean not null default false,
    sending_since   bigint,
    sending_owner   text,
    unsure          bigint not null default 0,
    unsure_at       bigint,
    search_failures bigint not null default 0,
    blind           boolean not null default false
);

create index outbox_due on outbox (status, next_attempt_at);
create index outbox_thread on outbox (thread, status, outbox_id);
create index outbox_run on outbox (run_id);

-- Every instance listens: a run that may be claimable (queued, or a slot freed), a delivery
-- queued, a cancel asked for. Sent on commit, so a listener never sees an uncommitted row.
create function chatrun_notify_run() returns trigger language plpgsql as $$
begin
    if new.status = 'queued' and (tg_op = 'INSERT' or old.status <> 'queued') then
        perform pg_notify('chatrun_work', '');
    elsif tg_op = 'UPDATE' and old.status = 'running' and new.status <> 'running' then
        perform pg_notify('chatrun_work', '');
    end if;
    if tg_op = 'UPDATE' and new.cancel_reason is not null and old.cancel_reason is null then
        perform pg_notify('chatrun_cancel', new.run_id::text);
    end if;
    return null;
end
$$;

create trigger run_notify after insert or update of status, cancel_reason on run
    for each row execute function chatrun_notify_run();

create function chatrun_notify_outbox() returns trigger language plpgsql as $$
begin
    perform pg_notify('chatrun_delivery', '');
    return null;
end
$$;

create trigger outbox_notify after insert on outbox
    for each row execute function chatrun_notify_outbox();
