-- Remote agents (issue #22): the tokens they authenticate with, kept by the SHA-256 of the
-- token (it is shown once, when made), and each agent as the server last saw it.
create table agent_token (
    name       text primary key,
    token_hash text not null unique,
    created_at integer not null,
    revoked_at integer
);

create table agent (
    name         text primary key,
    token_name   text not null,
    labels       text not null,     -- comma-separated
    version      text not null,
    last_seen_at integer not null,
    run_id       integer               -- the run it holds
);
