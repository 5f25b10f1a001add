-- The queue's look-ups stay cheap however long the queue grows (issue #8): a trigger, a claim
-- and a queue position no longer read every queued run.
--
-- Queued runs by job, in order: the claim takes the oldest queued run of each job (one index
-- seek per job), and the history's job+status filter pages through it. It replaces (job, status).
create index run_status_job_id on run (status, job, run_id);
drop index run_job_status;

-- How many runs of each job are queued, kept by the triggers below in the same transaction as
-- the change to `run`: a new run's queue position and the job's queue_limit are one row's read.
create table job_queue (
    job    text primary key,
    queued integer not null default 0 check (queued >= 0)
) without rowid;
insert into job_queue (job, queued)
select job, count(*) from run where status = 'queued' group by job;

create trigger run_queued_insert after insert on run when new.status = 'queued'
begin
    insert into job_queue (job, queued) values (new.job, 1)
    on conflict (job) do update set queued = queued + 1;
end;

create trigger run_queued_enter after update of status on run
when new.status = 'queued' and old.status <> 'queued'
begin
    insert into job_queue (job, queued) values (new.job, 1)
    on conflict (job) do update set queued = queued + 1;
end;

create trigger run_queued_leave after update of status on run
when old.status = 'queued' and new.status <> 'queued'
begin
    update job_queue set queued = queued - 1 where job = old.job;
end;

create trigger run_queued_delete after delete on run when old.status = 'queued'
begin
    update job_queue set queued = queued - 1 where job = old.job;
end;
