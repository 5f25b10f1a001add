-- The remote agent that ran (or runs) the run; null: the server's own workers.
alter table run add column agent text;
