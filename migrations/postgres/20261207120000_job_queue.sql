-- Each job's count of queued runs, kept by a trigger on `run` (as on SQLite): a trigger's
-- place and a claim's choice of jobs read it instead of counting the queued runs, which grow
-- without bound while triggers come faster than runs finish.
create table job_queue (
    job    text primary key,
    queued bigint not null default 0 check (queued >= 0)
);
insert into job_queue (job, queued)
select job, count(*) from run where status = 'queued' group by job;

create function chatrun_job_queue() returns trigger language plpgsql as $$
begin
    if tg_op in ('UPDATE', 'DELETE') and old.status = 'queued' then
        update job_queue set queued = queued - 1 where job = old.job;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.status = 'queued' then
        insert into job_queue (job, queued) values (new.job, 1)
        on conflict (job) do update set queued = job_queue.queued + 1;
    end if;
    return null;
end
$$;

create trigger run_job_queue after insert or delete or update of status on run
    for each row execute function chatrun_job_queue();
