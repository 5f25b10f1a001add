-- Run logs in the database, so that any instance shows the log of a run another one executes,
-- live. A log is a run's chunks in order of `pos` (where the chunk's first byte is in the log:
-- in the output as printed while the run goes, in the stored log once it is over), each with
-- the newlines before it. Capped as the log files are (src/logs/): the head, then the newest
-- output while the run goes, then the marker and the tail.
create table log_chunk (
    run_id bigint not null,
    pos    bigint not null,
    lines  bigint not null,
    data   bytea  not null
);
create index log_chunk_run_pos on log_chunk (run_id, pos);

-- Pages that follow a run's log wake on its new output (the run id is the payload; identical
-- notifications in one transaction are sent once).
create function chatrun_notify_log() returns trigger language plpgsql as $$
begin
    perform pg_notify('chatrun_log', new.run_id::text);
    return null;
end
$$;

create trigger log_chunk_notify after insert on log_chunk
    for each row execute function chatrun_notify_log();
