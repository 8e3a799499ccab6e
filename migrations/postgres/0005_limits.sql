-- Limits: bucket keys are now fixed-length hashes (written by the code, no schema change), and
-- a bucket can hold reservations for checks still in flight, so a correct password is never
-- refused because other logins of the same account are being hashed.
alter table rate_limits add column inflight bigint not null default 0;
-- When the last reservation was taken: reservations left by a crashed instance lapse.
alter table rate_limits add column inflight_at bigint not null default 0;
