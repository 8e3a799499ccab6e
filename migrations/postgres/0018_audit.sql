-- The audit log (issue 11): security events may name no account (a failed login for an
-- unknown address, a client created, a key rotated), carry the email they were about and
-- the client, and outlive the account they name, until the retention purge takes them
-- (CLEF_AUDIT_RETENTION).
alter table security_events alter column user_id drop not null;
alter table security_events drop constraint security_events_user_id_fkey;
alter table security_events add constraint security_events_user_id_fkey
    foreign key (user_id) references users (user_id) on delete set null;
alter table security_events add column email text;
alter table security_events add column client_id text;
-- Events recorded so far name their account by id only: keep its email with them.
update security_events set email = (select u.email from users u where u.user_id = security_events.user_id)
    where email is null;
create index security_events_at on security_events (at);
create index security_events_email on security_events (email, at);
