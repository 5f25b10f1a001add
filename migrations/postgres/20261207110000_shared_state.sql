-- What every instance must agree on: web sessions (by the SHA-256 of the cookie's token), keys
-- made once (the forms' cross-site key), and the rate limit's recent requests.
create table session (
    token_hash text primary key,
    user_name  text not null,
    expires_at bigint not null
);

create table secret (
    name  text primary key,
    value bytea not null
);

create table rate_event (
    key text not null,       -- platform:user id
    at  bigint not null
);
create index rate_event_key_at on rate_event (key, at);
