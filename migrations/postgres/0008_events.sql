-- What happened to an account, for its owner's "recent security events" list and for audit:
-- logins, second-factor changes, password and email changes, operator actions.
create table security_events (
    event_id text primary key,
    user_id text not null references users (user_id) on delete cascade,
    kind text not null,
    ip text,
    user_agent text,
    detail text,
    at bigint not null
);
create index security_events_user on security_events (user_id, at);
