-- The audit log (issue 11): security events may name no account (a failed login for an
-- unknown address, a client created, a key rotated), carry the email they were about and
-- the client, and outlive the account they name, until the retention purge takes them
-- (CLEF_AUDIT_RETENTION). SQLite cannot relax NOT NULL or change a foreign key in place,
-- so the table is rebuilt; nothing references it.
create table security_events_new (
    event_id text primary key,
    user_id text references users (user_id) on delete set null,
    kind text not null,
    ip text,
    user_agent text,
    detail text,
    at integer not null,
    email text,
    client_id text
);
insert into security_events_new (event_id, user_id, kind, ip, user_agent, detail, at)
    select event_id, user_id, kind, ip, user_agent, detail, at from security_events;
drop table security_events;
alter table security_events_new rename to security_events;
create index security_events_user on security_events (user_id, at);
-- Events recorded so far name their account by id only: keep its email with them.
update security_events set email = (select u.email from users u where u.user_id = security_events.user_id)
    where email is null;
create index security_events_at on security_events (at);
create index security_events_email on security_events (email, at);
