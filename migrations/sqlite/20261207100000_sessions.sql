-- Web sessions in the database, so they outlive a restart: a session is found by the SHA-256
-- of its cookie's token, never the token itself.
create table session (
    token_hash text primary key,
    user_name  text not null,
    expires_at integer not null
);

-- Keys chatrun makes once and keeps (the key of the forms' cross-site tokens).
create table secret (
    name  text primary key,
    value blob not null
);
