-- Run logs as chunks in the database (see migrations/postgres/): the backend for instances
-- that share a database. The embedded default keeps its logs as files in data_dir/logs; the
-- table is here so that both backends pass one store suite.
create table log_chunk (
    run_id integer not null,
    pos    integer not null,
    lines  integer not null,
    data   blob    not null
);
create index log_chunk_run_pos on log_chunk (run_id, pos);
